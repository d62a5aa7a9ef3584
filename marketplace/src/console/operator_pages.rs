//! The operator's pages: GMV, fees and take rate by period and currency; top plugins and
//! partners; payout runs and their results (from the audit log) and running one; listings
//! to feature, delist or relist; the revenue-share policies; the audit log; the ledger check.
//! The dashboard, the audit log and the directories have a file each under `operator_pages/`;
//! `words` says figures and entries in words.

mod audit_pages;
mod dashboard;
mod directory_pages;
mod words;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::ErrorCode;

pub(super) use self::audit_pages::day_start;
// The dashboard's template names these by their path here.
use self::words::paid_amounts;
pub use self::words::{tiers_in_words, who};
use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::billing::ledger::{self, LedgerReport};
use crate::billing::payouts;
use crate::catalog;
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(dashboard::routes())
        .merge(audit_pages::routes())
        .merge(directory_pages::routes())
        .route("/console/operator/ledger", get(ledger_check))
        .route("/console/operator/payouts/run", post(run_payouts))
        .route("/console/operator/listings/{publisher}/{name}/{action}", post(mark_listing))
}

const DAY_MS: i64 = 86_400_000;

async fn run_payouts(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    let report = payouts::run_for(&state.market, &signed.0.caller).await?;
    let notice = format!(
        "Payout run for {}: {} paid, {} failed, {} pending",
        report.period, report.paid, report.failed, report.pending
    );
    Ok(Redirect::to(&format!("/console/operator?notice={}", super::catalog_pages::urlencode(&notice))).into_response())
}

async fn mark_listing(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name, action)): Path<(String, String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = super::catalog_pages::plugin_id(&publisher, &name)?;
    let reason = fields.text("reason");
    let db = &state.market.db;
    let caller = &signed.0.caller;
    let needs_reason =
        |what: &str| PageError::bad_request(ErrorCode::InvalidRequest, format!("say why you {what} {id}"));
    match action.as_str() {
        "feature" => {
            let note = reason.ok_or_else(|| needs_reason("feature"))?;
            crate::co_marketing::feature(&state.market, caller, &id, Some(note)).await?
        }
        "unfeature" => crate::co_marketing::feature(&state.market, caller, &id, None).await?,
        "delist" => catalog::delist(db, caller, &id, Some(reason.ok_or_else(|| needs_reason("delist"))?)).await?,
        "relist" => catalog::delist(db, caller, &id, None).await?,
        other => {
            return Err(PageError::new(
                axum::http::StatusCode::NOT_FOUND,
                ErrorCode::UnknownRoute,
                format!("`{other}` is not feature, unfeature, delist or relist"),
            ));
        }
    };
    let notice = format!("{id}: {action} done");
    Ok(Redirect::to(&format!("/console/operator?notice={}", super::catalog_pages::urlencode(&notice))).into_response())
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    chrome: Chrome,
    report: LedgerReport,
}

async fn ledger_check(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    signed.0.caller.require_operator()?;
    let report = ledger::verify(&state.market).await?;
    render(&LedgerPage { chrome: Chrome::new("Ledger check", Some(&signed.0)), report })
}
