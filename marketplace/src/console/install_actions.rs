//! What a tenant does to an install from its page: edit its settings, set, replace or
//! remove a secret, pay what failed, and uninstall it (after ticking a confirmation). A
//! refused form comes back on the install page beside the form, with what was typed kept.

use std::collections::BTreeMap;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;

use super::catalog_pages::{config_lines, urlencode};
use super::session::Signed;
use super::tenant_pages::{DetailForm, Refused, detail_page};
use super::{Fields, PageError};
use crate::MarketError;
use crate::billing::settle;
use crate::installs::{self, SettingsUpdate};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/installs/{id}/settings", post(settings))
        .route("/console/installs/{id}/secrets", post(set_secret))
        .route("/console/installs/{id}/secrets/{name}/remove", post(remove_secret))
        .route("/console/installs/{id}/settle", post(pay))
        .route("/console/installs/{id}/uninstall", post(uninstall))
}

/// Back to the install page with a notice.
fn done(id: &str, notice: &str) -> Response {
    Redirect::to(&format!("/console/installs/{id}?notice={}", urlencode(notice))).into_response()
}

/// A refusal the tenant can act on comes back on the page; anything else is an error page.
async fn refused_or(
    state: &AppState,
    signed: &Signed,
    id: &str,
    error: MarketError,
    config_text: Option<String>,
) -> Result<Response, PageError> {
    match error {
        MarketError::Invalid { .. } | MarketError::Conflict { .. } | MarketError::ConsentRequired { .. } => {
            let refused = Refused { problem: error.to_string(), config_text };
            detail_page(state, signed, id, DetailForm::default(), Some(refused)).await
        }
        other => Err(other.into()),
    }
}

async fn settings(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let typed = fields.get("config").unwrap_or_default().to_string();
    let config = match config_lines(&typed) {
        Ok(config) => config,
        Err(problem) => {
            let refused = Refused { problem, config_text: Some(typed) };
            return detail_page(&state, &signed, &id, DetailForm::default(), Some(refused)).await;
        }
    };
    let update = SettingsUpdate { config: Some(config), secrets: BTreeMap::new(), requirement: None };
    match installs::update_settings(&state.market, &signed.0.caller, &id, update).await {
        Ok(_) => Ok(done(&id, "Settings saved; the next event uses them.")),
        Err(error) => refused_or(&state, &signed, &id, error, Some(typed)).await,
    }
}

async fn set_secret(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let Some(name) = fields.text("name").map(String::from) else {
        let refused = Refused { problem: "name the secret to set".into(), config_text: None };
        return detail_page(&state, &signed, &id, DetailForm::default(), Some(refused)).await;
    };
    let value = fields.get("value").unwrap_or_default().to_string();
    let update =
        SettingsUpdate { config: None, secrets: BTreeMap::from([(name.clone(), Some(value))]), requirement: None };
    match installs::update_settings(&state.market, &signed.0.caller, &id, update).await {
        Ok(_) => Ok(done(&id, &format!("Secret {name} set; it is never shown again."))),
        Err(error) => refused_or(&state, &signed, &id, error, None).await,
    }
}

async fn remove_secret(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    let update = SettingsUpdate { config: None, secrets: BTreeMap::from([(name.clone(), None)]), requirement: None };
    match installs::update_settings(&state.market, &signed.0.caller, &id, update).await {
        Ok(_) => Ok(done(&id, &format!("Secret {name} removed."))),
        Err(error) => refused_or(&state, &signed, &id, error, None).await,
    }
}

async fn pay(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    match settle::settle(&state.market, &signed.0.caller, &id).await {
        Ok(report) if report.outstanding.is_empty() => {
            Ok(done(&id, &format!("Paid: {} charge(s) collected; nothing is outstanding.", report.collected.len())))
        }
        Ok(report) => Ok(done(
            &id,
            &format!(
                "{} charge(s) collected, {} still outstanding: the card was declined again or the answer is not in yet.",
                report.collected.len(),
                report.outstanding.len()
            ),
        )),
        Err(error) => refused_or(&state, &signed, &id, error, None).await,
    }
}

async fn uninstall(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    if fields.get("confirm") != Some("yes") {
        let refused = Refused {
            problem: "tick \"Yes, uninstall\" to confirm: uninstalling stops its events and deletes its stored data"
                .into(),
            config_text: None,
        };
        return detail_page(&state, &signed, &id, DetailForm::default(), Some(refused)).await;
    }
    match installs::uninstall(&state.market, &signed.0.caller, &id).await {
        Ok(install) => Ok(done(&install.id, "Uninstalled. Its history and bills stay here.")),
        Err(error) => refused_or(&state, &signed, &id, error, None).await,
    }
}
