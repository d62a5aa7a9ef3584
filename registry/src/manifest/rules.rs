//! The per-field checks behind [`Manifest::validate`](super::Manifest::validate), and the
//! limits they enforce.

use std::collections::BTreeMap;

use nexus_host::Capability;

use super::{
    CATEGORIES, CapabilityRequest, Links, MAX_SCREENSHOTS, ManifestError, Media, PricingModel, PricingPlan, Setting,
    invalid,
};

/// Fits one line of a listing card.
pub(super) const MAX_SUMMARY_CHARS: usize = 140;
/// Room for a full README-style page without letting one manifest bloat listing storage.
pub(super) const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// One version's changes, shown beside it on the listing.
pub(super) const MAX_CHANGELOG_CHARS: usize = 4_000;
/// A media path, relative to the project folder.
const MAX_MEDIA_PATH_CHARS: usize = 200;
/// More than five categories stops being a classification.
const MAX_CATEGORIES: usize = 5;
/// Long enough for compound SPDX expressions such as `(MIT OR Apache-2.0) AND BSD-3-Clause`.
const MAX_LICENSE_CHARS: usize = 64;
/// A plugin subscribing to more event types than this should use `*`.
const MAX_EVENT_TYPES: usize = 64;
const MAX_EVENT_TYPE_CHARS: usize = 64;
/// Capability and host reasons are shown on the install consent screen; a tweet's length.
const MAX_REASON_CHARS: usize = 280;
const MAX_PLAN_ID_CHARS: usize = 32;
const MAX_PLAN_NAME_CHARS: usize = 64;

pub(super) fn check_length(field: &str, value: &str, max: usize) -> Result<(), ManifestError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(invalid(field, format!("must be at most {max} characters, got {chars}")));
    }
    Ok(())
}

/// Required human text: not blank, at most `max` characters.
pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ManifestError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    check_length(field, value, max)
}

fn check_count(field: &str, what: &str, count: usize, max: usize) -> Result<(), ManifestError> {
    if !(1..=max).contains(&count) {
        return Err(invalid(field, format!("must list 1 to {max} {what}, got {count}")));
    }
    Ok(())
}

pub(super) fn check_categories(categories: &[String]) -> Result<(), ManifestError> {
    check_count("categories", "categories", categories.len(), MAX_CATEGORIES)?;
    for (i, category) in categories.iter().enumerate() {
        let field = format!("categories[{i}]");
        if !CATEGORIES.contains(&category.as_str()) {
            let expected = CATEGORIES.join(", ");
            return Err(invalid(field, format!("{category:?} is not a category (expected one of {expected})")));
        }
        if categories[..i].contains(category) {
            return Err(invalid(field, format!("{category:?} is listed twice")));
        }
    }
    Ok(())
}

/// Deliberately not a full SPDX parser: the character set keeps the field to an identifier
/// or simple expression; checking ids against the SPDX list is left to review.
pub(super) fn check_license(license: &str) -> Result<(), ManifestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '(' | ')' | ' ');
    let chars = license.chars().count();
    if license.trim().is_empty() || chars > MAX_LICENSE_CHARS || !license.chars().all(allowed) {
        let problem = format!(
            "{license:?} must be an SPDX license expression: 1 to {MAX_LICENSE_CHARS} letters, digits, spaces and . + - ( )"
        );
        return Err(invalid("license", problem));
    }
    Ok(())
}

pub(super) fn check_url(field: &str, value: Option<&str>) -> Result<(), ManifestError> {
    let Some(value) = value else { return Ok(()) };
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(invalid(field, format!("{value:?} must be an http(s) URL"))),
    }
}

fn valid_event_type(event_type: &str) -> bool {
    event_type == "*"
        || event_type.split('.').all(|segment| {
            !segment.is_empty()
                && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
        })
}

pub(super) fn check_event_types(event_types: &[String]) -> Result<(), ManifestError> {
    check_count("event-types", "event types", event_types.len(), MAX_EVENT_TYPES)?;
    for (i, event_type) in event_types.iter().enumerate() {
        let field = format!("event-types[{i}]");
        check_length(&field, event_type, MAX_EVENT_TYPE_CHARS)?;
        if !valid_event_type(event_type) {
            let problem = format!(
                "{event_type:?} must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'"
            );
            return Err(invalid(field, problem));
        }
        if event_types[..i].contains(event_type) {
            return Err(invalid(field, format!("{event_type:?} is listed twice")));
        }
    }
    Ok(())
}

pub(super) fn check_capabilities(capabilities: &BTreeMap<Capability, CapabilityRequest>) -> Result<(), ManifestError> {
    for (capability, request) in capabilities {
        let field = format!("capabilities.{capability}");
        check_text(&format!("{field}.reason"), &request.reason, MAX_REASON_CHARS)?;
        match (*capability == Capability::Http, request.hosts.is_empty()) {
            (true, true) => return Err(invalid(format!("{field}.hosts"), "must list at least one host")),
            (false, false) => return Err(invalid(format!("{field}.hosts"), "is only allowed for http")),
            _ => {}
        }
        for (i, host) in request.hosts.iter().enumerate() {
            let field = format!("{field}.hosts[{i}]");
            check_text(&format!("{field}.reason"), &host.reason, MAX_REASON_CHARS)?;
            if request.hosts[..i].iter().any(|h| h.host == host.host) {
                return Err(invalid(format!("{field}.host"), format!("\"{}\" is listed twice", host.host)));
            }
        }
    }
    Ok(())
}

pub(super) fn check_pricing(plans: &[PricingPlan]) -> Result<(), ManifestError> {
    if plans.is_empty() {
        return Err(invalid("pricing", "must list at least one plan"));
    }
    for (i, plan) in plans.iter().enumerate() {
        let field = format!("pricing[{i}]");
        check_plan_id(&format!("{field}.id"), &plan.id)?;
        if let Some(first) = plans[..i].iter().position(|p| p.id == plan.id) {
            return Err(invalid(format!("{field}.id"), format!("{:?} is already used by pricing[{first}]", plan.id)));
        }
        check_text(&format!("{field}.name"), &plan.name, MAX_PLAN_NAME_CHARS)?;
        check_model(&field, &plan.model)?;
    }
    Ok(())
}

fn check_plan_id(field: &str, id: &str) -> Result<(), ManifestError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if id.is_empty() || id.len() > MAX_PLAN_ID_CHARS || !id.bytes().all(allowed) {
        return Err(invalid(field, format!("{id:?} must be 1 to {MAX_PLAN_ID_CHARS} of a-z, 0-9 and '-'")));
    }
    Ok(())
}

/// The longest trial a manifest may offer (the marketplace's own bound on plans).
pub const MAX_TRIAL_DAYS: u32 = 365;

fn check_model(field: &str, model: &PricingModel) -> Result<(), ManifestError> {
    match model {
        PricingModel::Free => Ok(()),
        PricingModel::Subscription { amount_minor, trial_days, .. } => {
            if *trial_days > MAX_TRIAL_DAYS {
                return Err(invalid(
                    format!("{field}.trial-days"),
                    format!("must be at most {MAX_TRIAL_DAYS}, got {trial_days}"),
                ));
            }
            check_amount(&format!("{field}.amount-minor"), *amount_minor)
        }
        PricingModel::OneTime { amount_minor, .. } => check_amount(&format!("{field}.amount-minor"), *amount_minor),
        PricingModel::Usage { meter, unit_amount_minor, cap_minor, .. } => {
            // The host's own rule, so every meter a plan names is one a plugin can report.
            if !nexus_host::capability::usage::valid_meter(meter) {
                let problem = format!("{meter:?} must be 1 to 64 of a-z, 0-9 and '-', not starting with '-'");
                return Err(invalid(format!("{field}.meter"), problem));
            }
            if let Some(cap) = cap_minor {
                check_amount(&format!("{field}.cap-minor"), *cap)?;
            }
            check_amount(&format!("{field}.unit-amount-minor"), *unit_amount_minor)
        }
    }
}

fn check_amount(field: &str, amount: i64) -> Result<(), ManifestError> {
    if amount <= 0 {
        return Err(invalid(field, format!("must be greater than 0, got {amount}")));
    }
    Ok(())
}

/// `[[settings]]`: names unique and shaped like install setting keys, a description, at most
/// [`super::MAX_DECLARED_SETTINGS`]; a secret needs the `secrets` capability, a setting `config`.
pub(super) fn check_settings(
    settings: &[Setting],
    capabilities: &BTreeMap<Capability, CapabilityRequest>,
) -> Result<(), ManifestError> {
    if settings.len() > super::MAX_DECLARED_SETTINGS {
        return Err(invalid(
            "settings",
            format!("at most {} settings and secrets, not {}", super::MAX_DECLARED_SETTINGS, settings.len()),
        ));
    }
    for (i, setting) in settings.iter().enumerate() {
        let field = format!("settings[{i}]");
        let name_ok = (1..=64).contains(&setting.name.len())
            && setting
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(invalid(
                format!("{field}.name"),
                format!("{:?} must be 1 to 64 of a-z, 0-9, '-', '_' and '.'", setting.name),
            ));
        }
        if settings[..i].iter().any(|earlier| earlier.name == setting.name) {
            return Err(invalid(format!("{field}.name"), format!("{:?} is declared twice", setting.name)));
        }
        check_text(&format!("{field}.description"), &setting.description, MAX_REASON_CHARS)?;
        let (needs, what) =
            if setting.secret { (Capability::Secrets, "a secret") } else { (Capability::Config, "a setting") };
        if !capabilities.contains_key(&needs) {
            return Err(invalid(
                field,
                format!("{:?} is {what}, so the plugin must request the `{}` capability", setting.name, needs.as_str()),
            ));
        }
    }
    Ok(())
}

/// `[links]`: http(s) URLs; `support` may instead be a `mailto:` address.
pub(super) fn check_links(links: &Links) -> Result<(), ManifestError> {
    check_url("links.documentation", links.documentation.as_deref())?;
    check_link("links.support", links.support.as_deref(), true)?;
    check_url("links.privacy", links.privacy.as_deref())?;
    check_url("links.terms", links.terms.as_deref())
}

/// An http(s) URL, or with `mailto` also a `mailto:` address.
pub(super) fn check_link(field: &str, value: Option<&str>, mailto: bool) -> Result<(), ManifestError> {
    match value {
        Some(mail) if mailto && mail.starts_with("mailto:") => {
            let address = &mail["mailto:".len()..];
            let plausible = address.len() <= 254
                && address.split_once('@').is_some_and(|(user, domain)| {
                    !user.is_empty()
                        && domain.contains('.')
                        && !address.contains(|c: char| c.is_whitespace() || c == '?')
                });
            if plausible { Ok(()) } else { Err(invalid(field, format!("{mail:?} is not a mailto: address"))) }
        }
        other => check_url(field, other),
    }
}

/// `[media]`: at most [`MAX_SCREENSHOTS`] screenshots; every path relative to the project
/// folder, inside it, and naming a PNG, JPEG or WebP file.
pub(super) fn check_media(media: &Media) -> Result<(), ManifestError> {
    if media.screenshots.len() > MAX_SCREENSHOTS {
        let problem = format!("at most {MAX_SCREENSHOTS} screenshots, got {}", media.screenshots.len());
        return Err(invalid("media.screenshots", problem));
    }
    let paths = media
        .icon
        .iter()
        .map(|p| ("media.icon".to_string(), p))
        .chain(media.screenshots.iter().enumerate().map(|(i, p)| (format!("media.screenshots[{i}]"), p)));
    for (field, path) in paths {
        check_text(&field, path, MAX_MEDIA_PATH_CHARS)?;
        let inside = !path.starts_with(['/', '\\'])
            && !path.contains(':')
            && path.split(['/', '\\']).all(|part| !part.is_empty() && part != "..");
        if !inside {
            return Err(invalid(
                field,
                format!("{path:?} must be a path inside the project folder, such as media/icon.png"),
            ));
        }
        let lower = path.to_ascii_lowercase();
        if ![".png", ".jpg", ".jpeg", ".webp"].iter().any(|ext| lower.ends_with(ext)) {
            return Err(invalid(field, format!("{path:?} must be a .png, .jpg, .jpeg or .webp image")));
        }
    }
    Ok(())
}
