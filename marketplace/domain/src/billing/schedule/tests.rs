use nexus_money::period::{MS_PER_DAY, parse_month};
use proptest::prelude::*;

use super::*;
use crate::billing::plans::UsageTerms;

/// Midnight UTC of `day` in the `YYYY-MM` month `label`.
fn at(label: &str, day: i64) -> i64 {
    parse_month(label).unwrap().start_ms + (day - 1) * MS_PER_DAY
}

/// The plan id a test names `name`: the same name, the same id.
fn plan_id(name: &str) -> crate::ids::PlanId {
    let hash = name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("pln_{hash:016x}").parse().unwrap()
}

fn plan(id: &str, model: PlanModel, price_minor: i64, interval: Option<Interval>) -> Plan {
    Plan {
        id: plan_id(id),
        plugin: "acme/hello".into(),
        key: id.into(),
        revision: 1,
        name: id.into(),
        model,
        currency: (model != PlanModel::Free).then(|| "USD".parse().unwrap()),
        price_minor,
        interval,
        trial_days: 0,
        usage: None,
        created_at: 0,
        retired_at: None,
    }
}

fn monthly(id: &str, price_minor: i64) -> Plan {
    plan(id, PlanModel::Subscription, price_minor, Some(Interval::Month))
}

fn metered(id: &str, unit_minor: i64) -> Plan {
    let usage = UsageTerms { meter: "emails".into(), unit_minor, included_units: 10, cap_minor: Some(1_000) };
    Plan { usage: Some(usage), ..plan(id, PlanModel::Usage, 0, Some(Interval::Month)) }
}

fn charge_id() -> ChargeId {
    "chg_0123456789abcdef".parse().unwrap()
}

/// Paid for April 2026 (30 days) from its start.
fn april_paid() -> BillingState {
    BillingState {
        plan_id: Some(plan_id("basic").to_string()),
        anchor: Some(at("2026-04", 1)),
        paid_through: Some(at("2026-05", 1)),
        next_bill_at: Some(at("2026-05", 1)),
        ..BillingState::default()
    }
}

fn paid(amount_minor: i64, status: ChargeStatus) -> PaidPeriod {
    let period = Period { start_ms: at("2026-04", 1), end_ms: at("2026-05", 1) };
    PaidPeriod { id: charge_id(), status, amount_minor, refunded_minor: 0, period }
}

fn position(anchor: i64) -> Position {
    Position {
        anchor,
        paid_through: Some(anchor),
        usage_billed_until: None,
        uninstalled_at: None,
        charges_new_periods: true,
    }
}

#[test]
fn shopify_upgrade_mid_period_credits_the_unused_old_and_charges_the_rest_of_the_new() {
    let (basic, pro, now) = (monthly("basic", 500), monthly("pro", 1500), at("2026-04", 16));
    let state = april_paid();
    assert!(credits_paid_period(&basic, &state, now));
    let credit = unused_credit(&paid(500, ChargeStatus::Collected), now).unwrap();
    assert_eq!(credit, Some((charge_id(), 250)));
    let change = plan_change(&basic, &pro, &state, now, None, credit).unwrap();
    assert_eq!(change.new_lines.len(), 1);
    let line = &change.new_lines[0];
    assert_eq!((line.line.as_str(), line.amount_minor), ("proration", 750));
    assert_eq!(line.period, Period { start_ms: now, end_ms: at("2026-05", 1) });
    assert_eq!(line.detail.prorated_of, Some((at("2026-04", 1), at("2026-05", 1))));
    assert!(!change.new_period_now);
    let expected = BillingState {
        plan_id: Some(plan_id("pro").to_string()),
        anchor: Some(at("2026-04", 1)),
        trial_ends_at: None,
        paid_through: Some(at("2026-05", 1)),
        usage_billed_until: None,
        next_bill_at: Some(at("2026-05", 1)),
    };
    assert_eq!(change.state, expected);
}

#[test]
fn a_change_during_a_trial_moves_no_money() {
    let (basic, pro, now) = (monthly("basic", 500), monthly("pro", 1500), at("2026-04", 3));
    let state = BillingState {
        anchor: Some(at("2026-04", 15)),
        trial_ends_at: Some(at("2026-04", 15)),
        paid_through: Some(at("2026-04", 15)),
        ..april_paid()
    };
    assert!(!credits_paid_period(&basic, &state, now));
    let change = plan_change(&basic, &pro, &state, now, None, None).unwrap();
    assert!(change.new_lines.is_empty() && change.credit.is_none() && !change.new_period_now);
    assert_eq!(change.state.paid_through, Some(at("2026-04", 15)));
    assert_eq!(change.state.trial_ends_at, Some(at("2026-04", 15)));
    assert_eq!(change.state.next_bill_at, Some(at("2026-04", 15)));
}

#[test]
fn another_interval_starts_a_new_period_at_the_change() {
    let yearly = plan("yearly", PlanModel::Subscription, 5_000, Some(Interval::Year));
    let now = at("2026-04", 16);
    let change = plan_change(&monthly("basic", 500), &yearly, &april_paid(), now, None, None).unwrap();
    assert!(change.new_period_now && change.new_lines.is_empty());
    assert_eq!(
        (change.state.anchor, change.state.paid_through, change.state.next_bill_at),
        (Some(now), Some(now), Some(now))
    );
}

#[test]
fn from_free_to_usage_starts_usage_at_the_change() {
    let free = plan("free", PlanModel::Free, 0, None);
    let state = BillingState { anchor: Some(at("2026-01", 5)), paid_through: None, next_bill_at: None, ..april_paid() };
    let now = at("2026-04", 16);
    assert_eq!(usage_before_change(&free, &state, now), None);
    let change = plan_change(&free, &metered("metered", 2), &state, now, None, None).unwrap();
    assert_eq!((change.state.anchor, change.state.usage_billed_until), (Some(now), Some(now)));
    assert_eq!((change.state.paid_through, change.state.next_bill_at), (None, Some(now)));
}

#[test]
fn a_one_time_target_is_charged_at_the_change_and_never_credited() {
    let once = plan("once", PlanModel::OneTime, 4_900, None);
    let now = at("2026-04", 16);
    let change = plan_change(&monthly("basic", 500), &once, &april_paid(), now, None, None).unwrap();
    let lines: Vec<(&str, i64)> = change.new_lines.iter().map(|l| (l.line.as_str(), l.amount_minor)).collect();
    assert_eq!(lines, [("one-time", 4_900)]);
    assert_eq!((change.state.paid_through, change.state.next_bill_at), (None, None));
    assert!(!credits_paid_period(&once, &change.state, now));
}

#[test]
fn usage_so_far_is_billed_under_the_old_plan() {
    let state = BillingState { usage_billed_until: Some(at("2026-04", 1)), ..april_paid() };
    let now = at("2026-04", 16);
    assert_eq!(
        usage_before_change(&metered("m", 2), &state, now),
        Some(Period { start_ms: at("2026-04", 1), end_ms: now })
    );
    assert_eq!(usage_before_change(&monthly("basic", 500), &state, now), None);
    assert_eq!(usage_before_change(&metered("m", 2), &state, at("2026-04", 1)), None);
}

#[test]
fn the_credit_waits_for_payment_and_never_exceeds_what_is_left() {
    let now = at("2026-04", 16);
    let refused = unused_credit(&paid(500, ChargeStatus::Failed), now).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::PaymentOutstanding);
    assert_eq!(unused_credit(&paid(0, ChargeStatus::NothingDue), now).unwrap(), None);
    let mostly_refunded = PaidPeriod { refunded_minor: 400, ..paid(500, ChargeStatus::Collected) };
    assert_eq!(unused_credit(&mostly_refunded, now).unwrap(), Some((charge_id(), 100)));
    let refunded = PaidPeriod { refunded_minor: 500, ..paid(500, ChargeStatus::Collected) };
    assert_eq!(unused_credit(&refunded, now).unwrap(), None);
}

#[test]
fn a_new_install_starts_at_once_or_after_its_trial() {
    let now = at("2026-04", 1);
    let started = start(&monthly("basic", 500), now, Some(at("2026-04", 15)));
    assert_eq!(started.anchor, Some(at("2026-04", 15)));
    assert_eq!(
        (started.paid_through, started.usage_billed_until, started.next_bill_at),
        (Some(at("2026-04", 15)), None, Some(at("2026-04", 15)))
    );
    let usage = start(&metered("m", 2), now, None);
    assert_eq!((usage.paid_through, usage.usage_billed_until, usage.next_bill_at), (None, Some(now), Some(now)));
    let free = start(&plan("free", PlanModel::Free, 0, None), now, None);
    assert_eq!((free.anchor, free.paid_through, free.next_bill_at), (Some(now), None, None));
}

#[test]
fn a_run_catches_up_whole_periods_in_advance() {
    let basic = monthly("basic", 500);
    let owed = owed(position(at("2026-01", 31)), &basic, at("2026-03", 31)).unwrap();
    let periods: Vec<(i64, i64, i64)> = owed
        .lines
        .iter()
        .map(|line| match line {
            Line::Ready(charge) => (charge.period.start_ms, charge.period.end_ms, charge.amount_minor),
            Line::Usage(_) => panic!("no usage"),
        })
        .collect();
    // Anchored on Jan 31: Feb 28, Mar 31, and the period starting Mar 31 is due at once.
    let expected = [
        (at("2026-01", 31), at("2026-02", 28), 500),
        (at("2026-02", 28), at("2026-03", 31), 500),
        (at("2026-03", 31), at("2026-04", 30), 500),
    ];
    assert_eq!(periods, expected);
    assert_eq!((owed.position.paid_through, owed.next_bill_at), (Some(at("2026-04", 30)), Some(at("2026-04", 30))));
}

#[test]
fn paused_for_payment_charges_no_new_period_but_bills_usage() {
    let both = Plan { model: PlanModel::Subscription, price_minor: 500, ..metered("both", 2) };
    let paused = Position {
        usage_billed_until: Some(at("2026-04", 1)),
        charges_new_periods: false,
        ..position(at("2026-04", 1))
    };
    let owed = owed(paused, &both, at("2026-05", 2)).unwrap();
    assert!(
        matches!(owed.lines.as_slice(), [Line::Usage(p)] if *p == Period { start_ms: at("2026-04", 1), end_ms: at("2026-05", 1) })
    );
    assert_eq!(owed.next_bill_at, Some(at("2026-06", 1)));
}

#[test]
fn usage_ends_at_the_uninstall() {
    let uninstalled = Position {
        usage_billed_until: Some(at("2026-04", 1)),
        uninstalled_at: Some(at("2026-04", 10)),
        ..position(at("2026-04", 1))
    };
    let segment = uninstalled.usage_segment(&metered("m", 2)).unwrap();
    assert_eq!(segment, Some(Period { start_ms: at("2026-04", 1), end_ms: at("2026-04", 10) }));
    let done = Position { usage_billed_until: Some(at("2026-04", 10)), ..uninstalled };
    assert_eq!(done.usage_segment(&metered("m", 2)).unwrap(), None);
}

#[test]
fn usage_is_rated_with_included_units_and_the_cap() {
    let segment = Period { start_ms: at("2026-04", 1), end_ms: at("2026-05", 1) };
    let line = rate_usage(&metered("m", 2), segment, 25).unwrap();
    assert_eq!((line.line.as_str(), line.amount_minor, line.detail.units_billable), ("usage:emails", 30, Some(15)));
    let capped = rate_usage(&metered("m", 2), segment, 10_000).unwrap();
    assert_eq!((capped.amount_minor, capped.detail.cap_applied_minor), (1_000, Some(1_000)));
    assert!(rate_usage(&monthly("basic", 500), segment, 1).is_err());
}

/// Instants from 2000 to 2100.
fn instant() -> impl Strategy<Value = i64> {
    946_684_800_000_i64..4_102_444_800_000
}

proptest! {
    #[test]
    fn owed_periods_meet_exactly_and_leave_nothing_due(anchor in instant(), days in 0_i64..1_500, price in 1_i64..1_000_000) {
        let basic = monthly("basic", price);
        let until = anchor + days * MS_PER_DAY;
        let owed = owed(position(anchor), &basic, until).unwrap();
        let mut from = anchor;
        for line in &owed.lines {
            let Line::Ready(charge) = line else { panic!("no usage") };
            prop_assert_eq!(charge.period.start_ms, from);
            prop_assert!(charge.period.end_ms > from);
            prop_assert_eq!(charge.amount_minor, price);
            from = charge.period.end_ms;
        }
        prop_assert!(from > until);
        prop_assert_eq!(owed.position.paid_through, Some(from));
        prop_assert_eq!(owed.next_bill_at, Some(from));
    }

    #[test]
    fn a_usage_segment_stays_inside_one_period(anchor in instant(), billed_days in 0_i64..1_000, offset in 0_i64..MS_PER_DAY) {
        let billed = anchor + billed_days * MS_PER_DAY + offset;
        let at_usage = Position { paid_through: None, usage_billed_until: Some(billed), ..position(anchor) };
        let segment = at_usage.usage_segment(&metered("m", 2)).unwrap().unwrap();
        let (_, period) = period::period_containing(anchor, Interval::Month, billed).unwrap();
        prop_assert_eq!(segment, Period { start_ms: billed, end_ms: period.end_ms });
        prop_assert_eq!(at_usage.next_bill_at(&metered("m", 2)).unwrap(), Some(period.end_ms));
    }

    #[test]
    fn a_change_on_the_same_grid_charges_the_new_remainder_and_credits_the_old(
        anchor in instant(),
        into in 0_i64..27 * MS_PER_DAY,
        old in 1_i64..1_000_000,
        new in 1_i64..1_000_000,
    ) {
        let now = anchor + into;
        let (_, period) = period::period_containing(anchor, Interval::Month, now).unwrap();
        let state = BillingState { anchor: Some(anchor), paid_through: Some(period.end_ms), ..BillingState::default() };
        let (current, target) = (monthly("old", old), monthly("new", new));
        prop_assert!(credits_paid_period(&current, &state, now));
        let charge = PaidPeriod { id: charge_id(), status: ChargeStatus::Collected, amount_minor: old, refunded_minor: 0, period };
        let credit = unused_credit(&charge, now).unwrap();
        prop_assert_eq!(credit.as_ref().map_or(0, |(_, c)| *c), period::prorate(old, period, now).unwrap());
        let change = plan_change(&current, &target, &state, now, None, credit).unwrap();
        prop_assert_eq!(change.new_lines.len(), 1);
        prop_assert_eq!(change.new_lines[0].amount_minor, period::prorate(new, period, now).unwrap());
        prop_assert!((0..=new).contains(&change.new_lines[0].amount_minor));
        prop_assert_eq!(change.state.paid_through, Some(period.end_ms));
        prop_assert_eq!(change.state.next_bill_at, Some(period.end_ms));
        prop_assert_eq!(change.state.anchor, Some(anchor));
    }
}
