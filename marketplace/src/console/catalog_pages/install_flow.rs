//! The tenant's install flow: the consent screen with every capability and host and why,
//! the plan, the settings and secrets; a refused install comes back on the form.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::{plugin_id, with_terms};
use crate::billing::plans::{self, Plan};
use crate::catalog;
use crate::console::session::Signed;
use crate::console::{Chrome, Fields, PageError, render};
use crate::installs::{self, Consent, GrantConsent, InstallRequest};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/catalog/{publisher}/{name}/install", get(install_form).post(install))
}

#[derive(Template)]
#[template(path = "install.html")]
struct InstallPage {
    chrome: Chrome,
    consent: Consent,
    plans: Vec<(Plan, String)>,
    problem: Option<String>,
    chosen_plan: String,
    config: String,
    /// Declared settings as typed, by name.
    typed: BTreeMap<String, String>,
}

impl InstallPage {
    fn typed_value(&self, name: &str) -> &str {
        self.typed.get(name).map_or("", String::as_str)
    }
}

async fn install_page(
    state: &AppState,
    signed: &Signed,
    publisher: &str,
    name: &str,
    problem: Option<String>,
    fields: &Fields,
) -> Result<Response, PageError> {
    let id = plugin_id(publisher, name)?;
    // The install flow is the tenant's; others are told so before they fill anything in.
    signed.0.caller.tenant(crate::accounts::TenantScope::Installs)?;
    if !catalog::is_installable(&state.market.db, &id).await? {
        return Err(crate::MarketError::NotFound(format!("plugin {id}")).into());
    }
    let consent = installs::preview(&state.market, &id.to_string(), None).await?;
    let plans = with_terms(plans::offered(&state.market, &id).await?);
    let chosen_plan =
        fields.text("plan").map(String::from).or_else(|| plans.first().map(|(p, _)| p.key.clone())).unwrap_or_default();
    let page = InstallPage {
        chrome: Chrome::new(format!("Install {id}"), Some(&signed.0)),
        consent,
        plans,
        problem,
        chosen_plan,
        config: fields.get("config").unwrap_or_default().to_string(),
        // What was typed into the declared settings comes back (secrets never do).
        typed: fields
            .0
            .iter()
            .filter_map(|(key, value)| key.strip_prefix("setting:").map(|name| (name.to_string(), value.clone())))
            .collect(),
    };
    let status =
        if page.problem.is_some() { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK };
    Ok((status, render(&page)?).into_response())
}

async fn install_form(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    install_page(&state, &signed, &publisher, &name, None, &Fields::default()).await
}

/// `name = value` lines; blank lines and `#` comments are skipped.
pub fn config_lines(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut config = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("config line {} is not `name = value`", number + 1));
        };
        config.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(config)
}

/// The settings and secrets the plugin declares, each in a field of its own name (settings
/// join `config`), and the secrets named in the form's free rows.
fn settings_and_secrets(fields: &Fields, config: &mut BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut secrets = BTreeMap::new();
    for (key, value) in &fields.0 {
        if value.trim().is_empty() {
            continue;
        }
        if let Some(setting) = key.strip_prefix("setting:") {
            config.insert(setting.to_string(), value.trim().to_string());
        } else if let Some(secret) = key.strip_prefix("secret:") {
            secrets.insert(secret.to_string(), value.clone());
        }
    }
    for index in 1..=3 {
        if let Some(secret) = fields.text(&format!("secret_name_{index}")) {
            secrets.insert(
                secret.to_string(),
                fields.get(&format!("secret_value_{index}")).unwrap_or_default().to_string(),
            );
        }
    }
    secrets
}

async fn install(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let mut config = match config_lines(fields.get("config").unwrap_or_default()) {
        Ok(config) => config,
        Err(problem) => return install_page(&state, &signed, &publisher, &name, Some(problem), &fields).await,
    };
    let secrets = settings_and_secrets(&fields, &mut config);
    let consent = GrantConsent {
        capabilities: fields.all("capability").filter_map(|c| c.parse().ok()).collect::<BTreeSet<_>>(),
        hosts: fields.all("host").map(String::from).collect(),
    };
    let request = InstallRequest {
        plugin: id.to_string(),
        requirement: None,
        consent: Some(consent),
        plan: fields.text("plan").map(String::from),
        config,
        secrets,
    };
    match crate::billing::purchase::install(&state.market, &signed.0.caller, request).await {
        Ok(created) => {
            state.market.warm_in_background(&created.plugin, &created.version);
            Ok(Redirect::to(&format!("/console/installs/{}?installed=1", created.id)).into_response())
        }
        Err(
            error @ (crate::MarketError::ConsentRequired { .. }
            | crate::MarketError::Invalid { .. }
            | crate::MarketError::Conflict { .. }),
        ) => install_page(&state, &signed, &publisher, &name, Some(error.to_string()), &fields).await,
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_are_name_equals_value() {
        let config = config_lines("# comment\n channel = #ops \n\nlevel=warn").unwrap();
        assert_eq!(config.get("channel").map(String::as_str), Some("#ops"));
        assert_eq!(config.get("level").map(String::as_str), Some("warn"));
        assert_eq!(config_lines("a = 1\nnonsense").unwrap_err(), "config line 2 is not `name = value`");
    }
}
