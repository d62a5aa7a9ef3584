//! The audit log, filtered by action, actor, target and dates, a page at a time.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::DAY_MS;
use super::words::who;
use crate::audit::{self, AuditEntry, AuditQuery};
use crate::console::session::Signed;
use crate::console::{Chrome, PageError, render};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/operator/audit", get(audit_log))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<AuditRow>,
    filters: AuditForm,
    total: u64,
    next: Option<String>,
}

/// An entry as the page shows it: who in words, the detail as label and value pairs.
struct AuditRow {
    entry: AuditEntry,
    who: String,
    detail: Vec<(String, String)>,
}

/// The audit page's filters, as typed: dates are `YYYY-MM-DD` (UTC), `to` inclusive.
#[derive(Debug, Default, Deserialize)]
struct AuditForm {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<i64>,
}

impl AuditForm {
    fn text(value: &Option<String>) -> Option<String> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from)
    }

    /// The filters as a query string (without `after`), for the next page's link.
    fn query(&self) -> String {
        [
            ("action", &self.action),
            ("actor", &self.actor),
            ("target", &self.target),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            Self::text(value).map(|v| format!("{key}={}", crate::console::catalog_pages::urlencode(&v)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// The start of a `YYYY-MM-DD` day (UTC) in milliseconds, refused with the field's name.
pub(in crate::console) fn day_start(field: &str, text: &str) -> Result<i64, PageError> {
    let refused = || {
        PageError::bad_request(ErrorCode::InvalidQuery, format!("{field} `{text}` is not a date such as 2026-11-30"))
    };
    let (month, day) = text.rsplit_once('-').ok_or_else(refused)?;
    let day: i64 = day.parse().map_err(|_| refused())?;
    let start = nexus_money::period::parse_month(month).map_err(|_| refused())?.start_ms + (day - 1) * DAY_MS;
    if !(1..=31).contains(&day) || nexus_money::period::day_label(start) != text {
        return Err(refused());
    }
    Ok(start)
}

/// An entry's detail as label and value pairs: strings without quotes, amounts and lists as
/// compact JSON; a detail that is not an object is one pair.
pub fn readable_detail(detail: &serde_json::Value) -> Vec<(String, String)> {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    match detail {
        serde_json::Value::Object(fields) => {
            fields.iter().map(|(key, value)| (key.replace('_', " "), text(value))).collect()
        }
        serde_json::Value::Null => Vec::new(),
        other => vec![("detail".to_string(), text(other))],
    }
}

async fn audit_log(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<AuditForm>,
) -> Result<Response, PageError> {
    signed.0.caller.require_operator()?;
    let from = AuditForm::text(&form.from).map(|d| day_start("from", &d)).transpose()?;
    let to = AuditForm::text(&form.to).map(|d| day_start("to", &d).map(|start| start + DAY_MS)).transpose()?;
    let query = AuditQuery {
        action: AuditForm::text(&form.action),
        actor: AuditForm::text(&form.actor),
        target: AuditForm::text(&form.target),
        from,
        to,
        after: form.after,
        per_page: Some(50),
    };
    let page = audit::list(&state.market.db, &query).await?;
    let next = page.has_more.then_some(page.next_after).flatten().map(|after| {
        let filters = form.query();
        if filters.is_empty() { format!("after={after}") } else { format!("{filters}&after={after}") }
    });
    render(&AuditPage {
        chrome: Chrome::new("Audit log", Some(&signed.0)),
        entries: page
            .items
            .into_iter()
            .map(|entry| AuditRow { who: who(&entry), detail: readable_detail(&entry.detail), entry })
            .collect(),
        total: page.total,
        filters: form,
        next,
    })
}
