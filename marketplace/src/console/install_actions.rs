//! What a tenant does to an install from its page: edit its settings, set, replace or
//! remove a secret, pay what failed, and uninstall it (after ticking a confirmation). A
//! refused form comes back on the install page beside the form, with what was typed kept.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::catalog_pages::{config_lines, urlencode};
use super::session::Signed;
use super::tenant_pages::{DetailForm, Refused, detail_page};
use super::{Chrome, Fields, PageError, money, render};
use crate::MarketError;
use crate::billing::plans::{self, Plan};
use crate::billing::settle::{self, PlanChange, PlanChangePreview, PreviewQuery};
use crate::ids::InstallId;
use crate::installs::{self, SettingsUpdate};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/installs/{id}/settings", post(settings))
        .route("/console/installs/{id}/secrets", post(set_secret))
        .route("/console/installs/{id}/secrets/{name}/remove", post(remove_secret))
        .route("/console/installs/{id}/settle", post(pay))
        .route("/console/installs/{id}/uninstall", post(uninstall))
        .route("/console/installs/{id}/plan", get(preview_plan).post(change_plan))
}

/// Back to the install page with a notice.
fn done(id: &str, notice: &str) -> Response {
    Redirect::to(&format!("/console/installs/{id}?notice={}", urlencode(notice))).into_response()
}

/// A refusal the tenant can act on comes back on the page; anything else is an error page.
async fn refused_or(
    state: &AppState,
    signed: &Signed,
    id: &InstallId,
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
    let id: InstallId = id.parse()?;
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
        Ok(_) => Ok(done(id.as_str(), "Settings saved; the next event uses them.")),
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
    let id: InstallId = id.parse()?;
    let Some(name) = fields.text("name").map(String::from) else {
        let refused = Refused { problem: "name the secret to set".into(), config_text: None };
        return detail_page(&state, &signed, &id, DetailForm::default(), Some(refused)).await;
    };
    let value = fields.get("value").unwrap_or_default().to_string();
    let update =
        SettingsUpdate { config: None, secrets: BTreeMap::from([(name.clone(), Some(value))]), requirement: None };
    match installs::update_settings(&state.market, &signed.0.caller, &id, update).await {
        Ok(_) => Ok(done(id.as_str(), &format!("Secret {name} set; it is never shown again."))),
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
    let id: InstallId = id.parse()?;
    let update = SettingsUpdate { config: None, secrets: BTreeMap::from([(name.clone(), None)]), requirement: None };
    match installs::update_settings(&state.market, &signed.0.caller, &id, update).await {
        Ok(_) => Ok(done(id.as_str(), &format!("Secret {name} removed."))),
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
    // Settling and changing plans check that the caller is the install's tenant before they
    // read its id (a caller without the role is refused even for a malformed one), so these
    // handlers pass the id on as sent and parse it only where the install page needs it.
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
        Err(error) => refused_or(&state, &signed, &id.parse()?, error, None).await,
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
    let id: InstallId = id.parse()?;
    if fields.get("confirm") != Some("yes") {
        let refused = Refused {
            problem: "tick \"Yes, uninstall\" to confirm: uninstalling stops its events and deletes its stored data"
                .into(),
            config_text: None,
        };
        return detail_page(&state, &signed, &id, DetailForm::default(), Some(refused)).await;
    }
    match installs::uninstall(&state.market, &signed.0.caller, &id).await {
        Ok(install) => Ok(done(install.id.as_str(), "Uninstalled. Its history and bills stay here.")),
        Err(error) => refused_or(&state, &signed, &id, error, None).await,
    }
}

#[derive(Template)]
#[template(path = "plan_change.html")]
struct PlanChangePage {
    chrome: Chrome,
    install: String,
    plugin: String,
    plan: Plan,
    terms: String,
    preview: PlanChangePreview,
    /// The change's Idempotency-Key, fixed when the page is drawn: sending the form twice
    /// (a double click, a resend) changes the plan once.
    key: String,
}

#[derive(Debug, Deserialize)]
struct PlanForm {
    plan: Option<String>,
}

/// The change's preview, to confirm: what is credited and charged today, then the terms.
async fn preview_plan(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(form): Query<PlanForm>,
) -> Result<Response, PageError> {
    let caller = &signed.0.caller;
    let Some(plan) = form.plan.filter(|p| !p.trim().is_empty()) else {
        let refused = Refused { problem: "choose the plan to move to".into(), config_text: None };
        return detail_page(&state, &signed, &id.parse()?, DetailForm::default(), Some(refused)).await;
    };
    let preview = match settle::preview_change(&state.market, caller, &id, PreviewQuery { plan }).await {
        Ok(preview) => preview,
        Err(error) => return refused_or(&state, &signed, &id.parse()?, error, None).await,
    };
    let install = installs::get(&state.market, caller, &id.parse()?).await?;
    let plan = plans::get(&state.market, &preview.to_plan.parse()?).await?;
    let key = nexus_registry::publishers::random_hex(16)?;
    render(&PlanChangePage {
        chrome: Chrome::new(format!("Change the plan of {}", install.plugin), Some(&signed.0)),
        install: id,
        plugin: install.plugin,
        terms: super::catalog_pages::plan_terms(&plan),
        plan,
        preview,
        key,
    })
}

impl PlanChangePage {
    fn amount(&self, minor: &i64) -> String {
        money(*minor, self.preview.currency.as_deref().unwrap_or(""))
    }
}

async fn change_plan(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let (Some(plan), Some(key)) = (fields.text("plan"), fields.text("key")) else {
        let refused =
            Refused { problem: "choose the plan to move to, and confirm it on its preview".into(), config_text: None };
        return detail_page(&state, &signed, &id.parse()?, DetailForm::default(), Some(refused)).await;
    };
    let request = PlanChange { plan: plan.to_string() };
    match settle::change_plan(&state.market, &signed.0.caller, &id, request, Some(&format!("console-{key}"))).await {
        Ok(install) => Ok(done(&id, &format!("Moved to plan {}.", install.plan))),
        Err(error) => refused_or(&state, &signed, &id.parse()?, error, None).await,
    }
}
