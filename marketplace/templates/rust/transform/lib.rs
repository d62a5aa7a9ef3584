//! {{name}}: normalizes each `contact.updated` into one contact shape (`transform` template).
//!
//! The result (`outcome.data`) always has these five keys, `null` where the contact has no
//! value. A blank value counts as none, and other payload fields are ignored.
//!
//! - `email`: the payload's `email` (required), trimmed and lower-cased; it must contain `@`.
//! - `first_name`, `last_name`: `name` split at whitespace: the first word, then the other
//!   words joined by single spaces (`last_name` is `null` for a one-word name).
//! - `phone`: the digits 0-9 of `phone`, nothing else.
//! - `country`: `country` trimmed and upper-cased or, when the payload has none, the
//!   install's config `default-country`, normalized the same way.
//!
//! The contact's details are never logged: they are personal data.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, config, log, payload};
use serde_json::json;

const EVENT_TYPES: &[&str] = &["contact.updated"];

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        // The crate's name and version are nexus.toml's: `nexus plugin check` compares them.
        Info {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        match event.event_type.as_str() {
            "contact.updated" => on_contact_updated(&event),
            other => Err(PluginError::unsupported_event(other, EVENT_TYPES)),
        }
    }
}

fn on_contact_updated(event: &Event) -> Result<Outcome, PluginError> {
    let fields = payload::object(&event.payload)?;
    let email = payload::string(&fields, "email")?.trim().to_lowercase();
    if !email.contains('@') {
        return Err(PluginError::invalid_payload("payload field email must be an email address"));
    }
    let (first_name, last_name) = split_name(payload::optional_string(&fields, "name")?.unwrap_or(""));
    let phone: String = payload::optional_string(&fields, "phone")?.unwrap_or("").chars().filter(char::is_ascii_digit).collect();
    let country = match country_code(payload::optional_string(&fields, "country")?) {
        Some(code) => Some(code),
        None => country_code(config::get("default-country")?.as_deref()),
    };

    log::info(&format!("normalized the contact of event {}", event.id));
    let contact = json!({
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "phone": (!phone.is_empty()).then_some(phone),
        "country": country,
    });
    Ok(Outcome { data: Some(contact.to_string()), actions: vec![] })
}

/// `" Dana  Katherine Scully"` → `(Dana, Katherine Scully)`; a blank name → `(None, None)`.
fn split_name(name: &str) -> (Option<String>, Option<String>) {
    let mut words = name.split_whitespace();
    let first = words.next().map(str::to_string);
    let rest: Vec<&str> = words.collect();
    (first, (!rest.is_empty()).then(|| rest.join(" ")))
}

/// Trimmed and upper-cased; `None` for an absent or blank value.
fn country_code(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(str::to_uppercase)
}

nexus_plugin_sdk::export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_the_rest() {
        assert_eq!(split_name(" Dana  Katherine Scully "), (Some("Dana".into()), Some("Katherine Scully".into())));
        assert_eq!(split_name("Cher"), (Some("Cher".into()), None));
        assert_eq!(split_name("  "), (None, None));
    }

    #[test]
    fn country_codes_are_upper_case_or_none() {
        assert_eq!(country_code(Some(" us ")), Some("US".into()));
        assert_eq!(country_code(Some(" ")), None);
        assert_eq!(country_code(None), None);
    }
}
