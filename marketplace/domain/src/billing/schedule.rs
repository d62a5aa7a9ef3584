//! The billing schedule as pure decisions, no SQL: when an install is next billed, which
//! `[start, end)` each bill covers, what a new install starts with, and what a plan change
//! charges, credits and leaves behind. The arithmetic is `nexus_money` (periods, proration,
//! rating); the callers (`run`, `settle`) read the install's
//! [`BillingState`](crate::installs::billing_state::BillingState), decide here and write.
//!
//! - subscription base fees in advance, from `paid_through` to the end of the period
//!   containing it (prorated when it starts inside one);
//! - usage in arrears, from `usage_billed_until` to the end of its period (or the
//!   uninstall);
//! - on a plan change: usage so far under the old plan, the unused part of the paid period
//!   credited back, the new plan's price for the rest of the period on the same grid (or a
//!   new period from the change on another), nothing during a trial.

use nexus_money::Currency;
use nexus_money::period::{self, Interval, Period};
use nexus_registry::ErrorCode;

use super::charges::{ChargeDetail, ChargeStatus, NewCharge};
use super::ids::ChargeId;
use super::money_error;
use super::plans::{Plan, PlanModel};
use crate::error::{MarketError, storage};
use crate::installs::billing_state::BillingState;

/// Rounds of [`owed`] per install and run at most: a guard against a schedule that never
/// advances, far above the periods any real install falls behind by.
const MAX_ROUNDS: usize = 10_000;

/// A plan's period length: monthly unless the plan says otherwise.
pub fn interval(plan: &Plan) -> Interval {
    plan.interval.unwrap_or(Interval::Month)
}

/// Where an install's billing stands for a billing run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The anchor of its periods (0 when none is stored).
    pub anchor: i64,
    pub paid_through: Option<i64>,
    pub usage_billed_until: Option<i64>,
    /// Usage ends at the uninstall.
    pub uninstalled_at: Option<i64>,
    /// Live and not paused for payment: new periods are charged.
    pub charges_new_periods: bool,
}

impl Position {
    /// The next usage segment: from where usage was billed to the end of its period (or
    /// the uninstall).
    pub fn usage_segment(&self, plan: &Plan) -> Result<Option<Period>, MarketError> {
        let (Some(_), Some(from)) = (&plan.usage, self.usage_billed_until) else { return Ok(None) };
        if self.uninstalled_at.is_some_and(|end| from >= end) {
            return Ok(None);
        }
        let (_, period) =
            period::period_containing(self.anchor, interval(plan), from.max(self.anchor)).map_err(money_error)?;
        let end = self.uninstalled_at.map_or(period.end_ms, |at| at.min(period.end_ms));
        Ok(Some(Period { start_ms: from, end_ms: end }))
    }

    /// When something is next due, given what is billed.
    pub fn next_bill_at(&self, plan: &Plan) -> Result<Option<i64>, MarketError> {
        let subscription = match self.paid_through {
            Some(at) if plan.charges_periods() && self.charges_new_periods => Some(at),
            _ => None,
        };
        let usage = self.usage_segment(plan)?.map(|p| p.end_ms);
        Ok([subscription, usage].into_iter().flatten().min())
    }
}

/// One line an install owes: ready, or a usage segment waiting for its units.
pub enum Line {
    Ready(Box<NewCharge>),
    Usage(Period),
}

/// What an install owes up to a moment, in the order it is billed, and where it stands after.
pub struct Owed {
    pub lines: Vec<Line>,
    pub position: Position,
    pub next_bill_at: Option<i64>,
}

/// The lines an install at `position` owes up to `until`: subscription periods in advance,
/// usage segments that ended. The usage segments are rated ([`rate_usage`]) once their units
/// are read.
pub fn owed(mut position: Position, plan: &Plan, until: i64) -> Result<Owed, MarketError> {
    let currency = plan.currency;
    let mut lines = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let mut progressed = false;
        if let (Some(from), Some(currency)) = (position.paid_through, currency)
            && plan.charges_periods()
            && position.charges_new_periods
            && from <= until
        {
            let line = period_line(plan, position.anchor, from, currency)?;
            position.paid_through = Some(line.period.end_ms);
            lines.push(Line::Ready(Box::new(line)));
            progressed = true;
        }
        if let Some(segment) = position.usage_segment(plan)?
            && segment.end_ms <= until
        {
            lines.push(Line::Usage(segment));
            position.usage_billed_until = Some(segment.end_ms);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let next_bill_at = position.next_bill_at(plan)?;
    Ok(Owed { lines, position, next_bill_at })
}

/// The base fee from `from` to the end of the period containing it, charged in advance:
/// the whole price from a period's start, its remainder from inside one.
pub fn period_line(plan: &Plan, anchor: i64, from: i64, currency: Currency) -> Result<NewCharge, MarketError> {
    let (_, period) = period::period_containing(anchor, interval(plan), from.max(anchor)).map_err(money_error)?;
    let amount = period::prorate(plan.price_minor, period, from).map_err(money_error)?;
    let mut detail = ChargeDetail::of(plan);
    detail.price_minor = Some(plan.price_minor);
    if from != period.start_ms {
        detail.prorated_of = Some((period.start_ms, period.end_ms));
    }
    Ok(NewCharge {
        line: "subscription".into(),
        period: Period { start_ms: from, end_ms: period.end_ms },
        currency,
        amount_minor: amount,
        detail,
    })
}

/// The usage line of one segment whose invocations reported `units`, rated by the plan.
pub fn rate_usage(plan: &Plan, segment: Period, units: i64) -> Result<NewCharge, MarketError> {
    let (Some(usage), Some(price)) = (&plan.usage, plan.usage_price()?) else {
        return Err(storage(format!("plan {} has no usage terms", plan.id)));
    };
    let rated = price.rate(u64::try_from(units).unwrap_or(0)).map_err(money_error)?;
    let mut detail = ChargeDetail::of(plan);
    detail.meter = Some(usage.meter.clone());
    detail.units_reported = Some(rated.reported_units);
    detail.units_included = Some(rated.included_units);
    detail.units_billable = Some(rated.billable_units);
    detail.unit_minor = Some(rated.unit.minor);
    detail.cap_applied_minor = rated.capped_at.map(|c| c.minor);
    Ok(NewCharge {
        line: format!("usage:{}", usage.meter),
        period: segment,
        currency: price.unit.currency,
        amount_minor: rated.amount.minor,
        detail,
    })
}

/// The charge of a one-time plan, bought at `now`.
pub fn one_time_line(plan: &Plan, now: i64) -> Result<NewCharge, MarketError> {
    let currency = plan.currency.ok_or_else(|| storage("one-time plan without currency"))?;
    let mut detail = ChargeDetail::of(plan);
    detail.price_minor = Some(plan.price_minor);
    Ok(NewCharge {
        line: "one-time".into(),
        period: Period { start_ms: now, end_ms: now },
        currency,
        amount_minor: plan.price_minor,
        detail,
    })
}

/// The billing state of a new install on `plan` at `now`, its trial (if any) ending at
/// `trial_ends_at`: periods and usage are anchored at the end of the trial, or at once.
pub fn start(plan: &Plan, now: i64, trial_ends_at: Option<i64>) -> BillingState {
    let anchor = trial_ends_at.unwrap_or(now);
    let usage_from = plan.usage.as_ref().map(|_| anchor);
    let paid_through = plan.charges_periods().then_some(anchor);
    BillingState {
        plan_id: Some(plan.id.to_string()),
        anchor: Some(anchor),
        trial_ends_at,
        paid_through,
        usage_billed_until: usage_from,
        next_bill_at: if plan.charges_periods() { Some(anchor) } else { usage_from },
    }
}

/// Whether the install is in a trial at `now`.
fn in_trial(state: &BillingState, now: i64) -> bool {
    state.trial_ends_at.is_some_and(|ends| ends > now)
}

/// The usage a plan change at `now` bills under the old plan: from where usage was billed.
pub fn usage_before_change(current: &Plan, state: &BillingState, now: i64) -> Option<Period> {
    match (&current.usage, state.usage_billed_until) {
        (Some(_), Some(from)) if from < now => Some(Period { start_ms: from, end_ms: now }),
        _ => None,
    }
}

/// Whether a plan change at `now` credits back a period paid in advance (then the caller
/// reads that period's charge for [`unused_credit`]).
pub fn credits_paid_period(current: &Plan, state: &BillingState, now: i64) -> bool {
    !in_trial(state, now) && current.charges_periods() && state.paid_through.is_some_and(|p| p > now)
}

/// The period charge covering a plan change, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidPeriod {
    pub id: ChargeId,
    pub status: ChargeStatus,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub period: Period,
}

/// The unused part of the period charge covering `now` (the tenant paid it in advance), to
/// credit back: never more than what is not refunded yet. A charge not yet collected must be
/// settled first.
pub fn unused_credit(charge: &PaidPeriod, now: i64) -> Result<Option<(ChargeId, i64)>, MarketError> {
    let PaidPeriod { id, status, amount_minor: amount, refunded_minor: refunded, period } = charge;
    if *status == ChargeStatus::NothingDue {
        return Ok(None);
    }
    if *status != ChargeStatus::Collected {
        return Err(MarketError::conflict(
            ErrorCode::PaymentOutstanding,
            format!("charge {id} for this period is {status}: settle it before changing plan"),
        ));
    }
    let credit = period::prorate(*amount, *period, now).map_err(money_error)?.min(amount - refunded);
    Ok((credit > 0).then(|| (id.clone(), credit)))
}

/// What a plan change does, decided before anything is written: the preview shows it and
/// the change applies it, so what a tenant is shown is what happens.
pub struct Change {
    /// Usage so far, billed under the old plan.
    pub usage_line: Option<NewCharge>,
    /// The unused part of the period's charge, credited back (a refund of that charge).
    pub credit: Option<(ChargeId, i64)>,
    /// Charged under the new plan at the change: the rest of the period, or a one-time price.
    pub new_lines: Vec<NewCharge>,
    /// The install's billing state on the new plan.
    pub state: BillingState,
    /// The new plan's first period starts at the change and is billed at once, in full.
    pub new_period_now: bool,
}

/// The change from `current` to `target` at `now` of an install in `state`, given its usage
/// so far rated under the old plan ([`usage_before_change`], [`rate_usage`]) and the credit
/// for its paid period ([`credits_paid_period`], [`unused_credit`]).
pub fn plan_change(
    current: &Plan,
    target: &Plan,
    state: &BillingState,
    now: i64,
    usage_line: Option<NewCharge>,
    credit: Option<(ChargeId, i64)>,
) -> Result<Change, MarketError> {
    let mut anchor = state.anchor.unwrap_or(now);
    let mut usage_billed_until = target.usage.as_ref().map(|_| now.max(anchor));
    let in_trial = in_trial(state, now);
    let same_grid = current.charges_periods() && current.interval == target.interval && !in_trial;
    let (mut paid_through, mut new_lines, mut new_period_now) = (None, Vec::new(), false);
    if target.charges_periods() {
        if in_trial {
            paid_through = Some(anchor);
        } else if same_grid {
            let line = proration_line(target, anchor, now)?;
            paid_through = Some(line.period.end_ms);
            new_lines.push(line);
        } else {
            (anchor, paid_through, new_period_now) = (now, Some(now), true);
        }
    } else if target.usage.is_some() && !in_trial && !same_grid && !current.charges_periods() && current.usage.is_none()
    {
        (anchor, usage_billed_until) = (now, Some(now));
    }
    if target.model == PlanModel::OneTime {
        new_lines.push(one_time_line(target, now)?);
    }
    let next_bill_at = [paid_through, usage_billed_until.map(|_| now)].into_iter().flatten().min();
    let state = BillingState {
        plan_id: Some(target.id.to_string()),
        anchor: Some(anchor),
        trial_ends_at: state.trial_ends_at,
        paid_through,
        usage_billed_until,
        next_bill_at,
    };
    Ok(Change { usage_line, credit, new_lines, state, new_period_now })
}

/// The new plan's price for the rest of the period containing `now`, on the same grid.
fn proration_line(target: &Plan, anchor: i64, now: i64) -> Result<NewCharge, MarketError> {
    let (_, period) = period::period_containing(anchor, interval(target), now).map_err(money_error)?;
    let mut detail = ChargeDetail::of(target);
    detail.price_minor = Some(target.price_minor);
    detail.prorated_of = Some((period.start_ms, period.end_ms));
    let currency = target.currency.ok_or_else(|| storage("priced plan without currency"))?;
    Ok(NewCharge {
        line: "proration".into(),
        period: Period { start_ms: now, end_ms: period.end_ms },
        currency,
        amount_minor: period::prorate(target.price_minor, period, now).map_err(money_error)?,
        detail,
    })
}

#[cfg(test)]
mod tests;
