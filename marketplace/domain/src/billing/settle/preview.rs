//! `GET /v1/installs/{id}/plan/preview`: a plan change decided as the change decides it,
//! shown instead of written.

use nexus_money::Currency;
use serde::{Deserialize, Serialize};

use super::{PlanChange, current_plan, decide, own_install, target_of};
use crate::accounts::Caller;
use crate::billing::plans::Plan;
use crate::billing::schedule::Change;
use crate::error::MarketError;
use crate::installs;
use crate::market::Market;
use nexus_registry::ErrorCode;

/// `GET /v1/installs/{id}/plan/preview?plan=`: what moving to `plan` would credit and
/// charge now, decided by the same rules the change applies; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanChangePreview {
    pub install: String,
    pub from_plan: String,
    pub to_plan: String,
    /// The currency of the totals: the new plan's (the old plan's when the new one is free).
    #[schema(value_type = Option<String>, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<Currency>,
    /// Credited back at the change: the unused part of the period already paid.
    pub credited_minor: i64,
    /// Charged at the change: usage so far, the new price for the rest of the period (or a
    /// whole new period from now), a one-time price.
    pub charged_minor: i64,
    /// Each line, credits negative.
    pub lines: Vec<PreviewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewLine {
    /// `usage:<meter>`, `proration-credit`, `proration`, `subscription` or `one-time`.
    pub line: String,
    pub amount_minor: i64,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
}

/// Query of `GET /v1/installs/{id}/plan/preview`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// A plan key of the install's plugin, or a plan revision id.
    pub plan: String,
}

pub async fn preview_change(
    market: &Market,
    caller: &Caller,
    id: &str,
    query: PreviewQuery,
) -> Result<PlanChangePreview, MarketError> {
    let install = own_install(market, caller, id).await?;
    if install.status == installs::InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    let target = target_of(market, &install, &PlanChange { plan: query.plan }).await?;
    let now = market.billing.clock.now_ms();
    let mut conn = market.db.pool.acquire().await?;
    let (current, state) = current_plan(&mut conn, id, &target, false).await?;
    let effects = decide(&mut conn, id, &current, &target, &state, now).await?;
    Ok(preview_of(id, current, target, &effects))
}

/// What a decided change credits and charges, line by line and in total.
fn preview_of(id: &str, current: Plan, target: Plan, effects: &Change) -> PlanChangePreview {
    let currency = target.currency.or(current.currency);
    let mut lines: Vec<PreviewLine> = Vec::new();
    let mut push = |line: String, amount_minor: i64, currency: Currency| {
        if amount_minor != 0 {
            lines.push(PreviewLine { line, amount_minor, currency });
        }
    };
    if let Some(usage) = &effects.usage_line {
        push(usage.line.clone(), usage.amount_minor, usage.currency);
    }
    if let (Some((_, credit)), Some(code)) = (&effects.credit, current.currency) {
        push("proration-credit".into(), -credit, code);
    }
    for line in &effects.new_lines {
        push(line.line.clone(), line.amount_minor, line.currency);
    }
    if let (true, Some(code)) = (effects.new_period_now, target.currency) {
        push("subscription".into(), target.price_minor, code);
    }
    let in_currency = |l: &&PreviewLine| Some(l.currency) == currency;
    PlanChangePreview {
        install: id.to_string(),
        from_plan: current.id.into(),
        to_plan: target.id.into(),
        credited_minor: -lines
            .iter()
            .filter(in_currency)
            .filter(|l| l.amount_minor < 0)
            .map(|l| l.amount_minor)
            .sum::<i64>(),
        charged_minor: lines.iter().filter(in_currency).filter(|l| l.amount_minor > 0).map(|l| l.amount_minor).sum(),
        currency,
        lines,
    }
}
