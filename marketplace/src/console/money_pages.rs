//! Money one charge at a time, and the operators' money actions. A charge's receipt (what
//! was charged, each payment attempt, its refunds and what stands) is printable by its
//! tenant and by operators; operators refund it from there. On a partner's page operators
//! hold and release its payouts and adjust its balance; on the dashboard they set a
//! currency's minimum payout. Every action needs a reason where the API keeps one and a
//! ticked confirmation; refusals come back on the page that sent them.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::catalog_pages::urlencode;
use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::MarketError;
use crate::billing::adjustments::{self, AdjustmentRequest};
use crate::billing::charges::{self, Charge};
use crate::billing::collect::{self, Attempt};
use crate::billing::holds::{self, HoldRequest, MinimumRequest};
use crate::billing::ids::ChargeId;
use crate::billing::refunds::{self, Refund, RefundRequest};
use crate::billing::share::{self, PolicyRequest, TierSpec};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/charges/{id}", get(receipt))
        .route("/console/charges/{id}/refund", post(refund))
        .route("/console/partners/{publisher}/hold", post(hold))
        .route("/console/partners/{publisher}/release", post(release))
        .route("/console/partners/{publisher}/adjustments", post(adjust))
        .route("/console/operator/minimums", post(minimum))
        .route("/console/operator/policies", post(policy))
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    chrome: Chrome,
    charge: Charge,
    attempts: Vec<Attempt>,
    refunds: Vec<Refund>,
    /// What stands of the charge: collected less refunded (0 until collected).
    net_minor: i64,
    is_operator: bool,
    /// The refund's Idempotency-Key, fixed when the page is drawn.
    key: String,
    notice: Option<String>,
    problem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Said {
    notice: Option<String>,
    problem: Option<String>,
}

/// A charge's receipt: its tenant's and the operators' (the API's rule for the charge).
async fn receipt(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(said): Query<Said>,
) -> Result<Response, PageError> {
    let caller = &signed.0.caller;
    let charge_id: ChargeId = id.parse()?;
    let charge = charges::get(&state.market, caller, &charge_id).await?;
    let attempts = collect::attempts(&state.market, &charge_id).await?;
    let refunds = refunds::of_charge(&state.market, &charge_id).await?;
    let collected = charge.collected_at.map_or(0, |_| charge.amount_minor);
    render(&ReceiptPage {
        chrome: Chrome::new(format!("Receipt for {}", charge.id), Some(&signed.0)),
        net_minor: collected - charge.refunded_minor,
        is_operator: caller.role() == "operator",
        key: nexus_registry::publishers::random_hex(16)?,
        notice: said.notice,
        problem: said.problem,
        charge,
        attempts,
        refunds,
    })
}

/// Back to `page` with a notice or a problem to show at its top.
fn back(page: &str, outcome: Result<String, String>) -> Response {
    let (key, text) = match outcome {
        Ok(notice) => ("notice", notice),
        Err(problem) => ("problem", problem),
    };
    let joiner = if page.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{page}{joiner}{key}={}", urlencode(&text))).into_response()
}

/// A refusal the operator can act on goes back to the form's page; a failure is an error page.
/// Who may not, or what does not exist, is the error page with the API's status.
fn refused(page: &str, error: MarketError) -> Result<Response, PageError> {
    let error = PageError::refusal(error)?;
    match error.status.as_u16() {
        400 | 409 | 422 => Ok(back(page, Err(error.message))),
        _ => Err(error),
    }
}

/// The form's confirmation box and reason, or what is missing, in words.
fn confirmed(fields: &Fields, needs_reason: bool) -> Result<Option<&str>, String> {
    if fields.get("confirm") != Some("yes") {
        return Err("tick the confirmation box: money actions are confirmed one by one".into());
    }
    let reason = fields.text("reason");
    if needs_reason && reason.is_none() {
        return Err("give a reason: it is kept with the action and shown to whom it concerns".into());
    }
    Ok(reason)
}

/// A decimal amount in the currency as typed (`12.50`), or what is wrong with it.
fn amount(fields: &Fields, currency: &str) -> Result<i64, String> {
    let currency = nexus_money::Currency::from_code(currency).map_err(|e| e.to_string())?;
    let text = fields.text("amount").ok_or("enter an amount such as 12.50")?;
    nexus_money::Money::parse(text, currency).map(|m| m.minor).map_err(|e| e.to_string())
}

async fn refund(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = format!("/console/charges/{id}");
    let charge_id: ChargeId = id.parse()?;
    let charge = charges::get(&state.market, &signed.0.caller, &charge_id).await?;
    let (reason, amount_minor) =
        match confirmed(&fields, true).and_then(|r| Ok((r, amount(&fields, &charge.currency)?))) {
            Ok((reason, minor)) => (reason.unwrap_or_default().to_string(), minor),
            Err(problem) => return Ok(back(&page, Err(problem))),
        };
    let key = fields.text("key").map(|k| format!("console-{k}"));
    match refunds::refund(
        &state.market,
        &signed.0.caller,
        &charge_id,
        RefundRequest { amount_minor, reason },
        key.as_deref(),
    )
    .await
    {
        Ok(done) => Ok(back(&page, Ok(format!("Refunded {}.", super::money(done.amount_minor, done.currency))))),
        Err(error) => refused(&page, error),
    }
}

async fn hold(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = format!("/console/partners/{publisher}");
    let reason = match confirmed(&fields, true) {
        Ok(reason) => reason.unwrap_or_default().to_string(),
        Err(problem) => return Ok(back(&page, Err(problem))),
    };
    match holds::hold(&state.market, &signed.0.caller, &publisher, HoldRequest { reason }).await {
        Ok(()) => Ok(back(&page, Ok(format!("{publisher}'s payouts are held until released.")))),
        Err(error) => refused(&page, error),
    }
}

async fn release(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = format!("/console/partners/{publisher}");
    if let Err(problem) = confirmed(&fields, false) {
        return Ok(back(&page, Err(problem)));
    }
    match holds::release(&state.market, &signed.0.caller, &publisher).await {
        Ok(()) => Ok(back(&page, Ok(format!("{publisher}'s payouts are released: the next run pays what is due.")))),
        Err(error) => refused(&page, error),
    }
}

async fn adjust(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = format!("/console/partners/{publisher}");
    let currency = fields.text("currency").unwrap_or_default().to_uppercase();
    let (reason, amount_minor) = match confirmed(&fields, true).and_then(|r| Ok((r, amount(&fields, &currency)?))) {
        Ok((reason, minor)) => (reason.unwrap_or_default().to_string(), minor),
        Err(problem) => return Ok(back(&page, Err(problem))),
    };
    let request = AdjustmentRequest { currency: currency.clone(), amount_minor, reason };
    let key = fields.text("key").map(|k| format!("console-{k}"));
    match adjustments::adjust(&state.market, &signed.0.caller, &publisher, request, key.as_deref()).await {
        Ok(done) => {
            Ok(back(&page, Ok(format!("Adjusted {publisher} by {}.", super::money(done.amount_minor, &currency)))))
        }
        Err(error) => refused(&page, error),
    }
}

async fn minimum(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = "/console/operator";
    let currency = fields.text("currency").unwrap_or_default().to_uppercase();
    let minimum_minor = match confirmed(&fields, false).and_then(|_| amount(&fields, &currency)) {
        Ok(minor) => minor,
        Err(problem) => return Ok(back(page, Err(problem))),
    };
    match holds::set_minimum(&state.market, &signed.0.caller, &currency, MinimumRequest { minimum_minor }).await {
        Ok(()) => Ok(back(
            page,
            Ok(format!("The minimum payout in {currency} is {}.", super::money(minimum_minor, &currency))),
        )),
        Err(error) => refused(page, error),
    }
}

/// Tiers as operators type them, one a line: `0% up to 1,000,000`, `10 up to 5000`, `15%
/// above` (or just `15`, the last). Rates take up to two decimals; bounds are whole units of
/// each currency.
pub fn parse_tiers(text: &str) -> Result<Vec<TierSpec>, String> {
    let mut tiers = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let lower = line.to_lowercase();
        let (rate, bound) = match lower.split_once("up to") {
            Some((rate, bound)) => (rate.trim(), Some(bound.trim())),
            None => (lower.trim_end_matches("above").trim(), None),
        };
        let rate = rate.trim_end_matches('%').trim();
        let (whole, fraction) = rate.split_once('.').unwrap_or((rate, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.len() > 2 || (!fraction.is_empty() && !digits(fraction)) {
            return Err(format!("tier line {number}: `{line}` does not start with a rate such as 15 or 12.5%"));
        }
        let rate_bp = whole.parse::<i64>().map_err(|_| format!("tier line {number}: the rate is too large"))? * 100
            + format!("{fraction:0<2}").parse::<i64>().unwrap_or(0);
        let up_to =
            match bound {
                Some(bound) => {
                    let cleaned: String = bound.chars().filter(|c| !matches!(c, ',' | '_' | ' ')).collect();
                    Some(cleaned.parse::<i64>().map_err(|_| {
                        format!("tier line {number}: `{bound}` is not a whole amount such as 1,000,000")
                    })?)
                }
                None => None,
            };
        tiers.push(TierSpec { up_to, rate_bp });
    }
    if tiers.is_empty() {
        return Err("write at least one tier, such as `15% above`".into());
    }
    Ok(tiers)
}

/// A revenue-share policy: for every partner, one partner, or one plan of one plugin, from
/// now or a later day.
async fn policy(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Operators' actions: anyone else is refused before the form is read.
    signed.0.caller.require_operator()?;
    let page = "/console/operator";
    let tiers = match confirmed(&fields, false).and_then(|_| parse_tiers(fields.get("tiers").unwrap_or_default())) {
        Ok(tiers) => tiers,
        Err(problem) => return Ok(back(page, Err(problem))),
    };
    let effective_from = match fields.text("from") {
        Some(day) => Some(super::operator_pages::day_start("from", day)?),
        None => None,
    };
    let text = |name: &str| fields.text(name).map(String::from);
    let request = PolicyRequest {
        publisher: text("publisher"),
        plugin: text("plugin"),
        plan: text("plan"),
        tiers,
        effective_from,
    };
    match share::put(&state.market, &signed.0.caller, request).await {
        Ok(made) => Ok(back(
            page,
            Ok(format!("Policy {} set: {}.", made.id, super::operator_pages::tiers_in_words(&made.tiers).join("; "))),
        )),
        Err(error) => refused(page, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_typed_as_rates_and_whole_bounds() {
        let tiers = parse_tiers("0% up to 1,000,000\n\n12.5 up to 5 000 000\n15% above").unwrap();
        assert_eq!(
            tiers,
            [
                TierSpec { up_to: Some(1_000_000), rate_bp: 0 },
                TierSpec { up_to: Some(5_000_000), rate_bp: 1250 },
                TierSpec { up_to: None, rate_bp: 1500 },
            ]
        );
        assert_eq!(parse_tiers("20").unwrap(), [TierSpec { up_to: None, rate_bp: 2000 }]);
        assert_eq!(parse_tiers("").unwrap_err(), "write at least one tier, such as `15% above`");
        assert!(parse_tiers("lots up to 5").unwrap_err().starts_with("tier line 1:"));
        assert!(parse_tiers("10.125%").unwrap_err().contains("rate such as"));
        assert!(parse_tiers("10 up to many").unwrap_err().contains("not a whole amount"));
    }
}
