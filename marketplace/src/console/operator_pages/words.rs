//! The operator's figures and audit entries in words: percentages, fee tiers, payout
//! amounts, who made an entry.

use crate::audit::AuditEntry;
use crate::billing::gmv::Interval;
use crate::billing::payouts;
use crate::billing::share;

/// A policy's tiers in words. Bounds are whole units of whichever currency the partner's
/// lifetime gross is in (`50` is 50.00 USD and 50 JPY), not minor units.
pub fn tiers_in_words(tiers: &[share::TierSpec]) -> Vec<String> {
    let whole = |units: i64| {
        let digits = units.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        grouped
    };
    let mut words = Vec::with_capacity(tiers.len());
    let mut below: Option<i64> = None;
    for tier in tiers {
        let fee = format!("{} fee", percent(tier.rate_bp));
        words.push(match (below, tier.up_to) {
            (None, Some(up_to)) => format!("{fee} on the first {} of lifetime gross in each currency", whole(up_to)),
            (Some(from), Some(up_to)) => format!("{fee} from {} to {}", whole(from), whole(up_to)),
            (Some(from), None) => format!("{fee} above {}", whole(from)),
            (None, None) => format!("{fee} on all gross"),
        });
        below = tier.up_to;
    }
    words
}

/// Who made an audit entry, as people read it: the person (their email) with the actor in
/// brackets, the maker of a token, or the actor itself (`system:payout-schedule`).
pub fn who(entry: &AuditEntry) -> String {
    match (&entry.person, &entry.token_created_by) {
        (Some(person), _) => format!("{person} ({})", entry.actor),
        (None, Some(maker)) => format!("{} (a token made by {maker})", entry.actor),
        (None, None) if entry.actor == payouts::SCHEDULED_ACTOR => "the payout schedule".to_string(),
        (None, None) => entry.actor.clone(),
    }
}

/// A payout run's amounts: `120.00 USD, 5000 JPY`, or `nothing`.
pub(super) fn paid_amounts(detail: &serde_json::Value) -> String {
    let amounts: Vec<String> = detail["paid_minor"]
        .as_object()
        .map(|paid| {
            paid.iter().map(|(currency, minor)| crate::console::money(minor.as_i64().unwrap_or(0), currency)).collect()
        })
        .unwrap_or_default();
    if amounts.is_empty() { "nothing".to_string() } else { amounts.join(", ") }
}

/// Basis points as a percentage: `1500` is `15.00%`.
pub(super) fn percent(bp: i64) -> String {
    format!("{}{}.{:02}%", if bp < 0 { "-" } else { "" }, bp.abs() / 100, bp.abs() % 100)
}

pub(super) fn interval_name(interval: Interval) -> &'static str {
    match interval {
        Interval::Day => "day",
        Interval::Week => "week",
        Interval::Month => "month",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn basis_points_read_as_percentages() {
        assert_eq!(super::percent(1500), "15.00%");
        assert_eq!(super::percent(7), "0.07%");
        assert_eq!(super::percent(-250), "-2.50%");
    }

    #[test]
    fn tiers_read_in_whole_units_of_each_currency() {
        use crate::billing::share::TierSpec;
        let tiers = [
            TierSpec { up_to: Some(50), rate_bp: 0 },
            TierSpec { up_to: Some(1_000_000), rate_bp: 1000 },
            TierSpec { up_to: None, rate_bp: 1500 },
        ];
        assert_eq!(
            super::tiers_in_words(&tiers),
            [
                "0.00% fee on the first 50 of lifetime gross in each currency",
                "10.00% fee from 50 to 1,000,000",
                "15.00% fee above 1,000,000",
            ]
        );
        assert_eq!(super::tiers_in_words(&[TierSpec { up_to: None, rate_bp: 2000 }]), ["20.00% fee on all gross"]);
    }

    #[test]
    fn payout_runs_name_their_amounts_with_currencies() {
        let detail = serde_json::json!({ "paid_minor": { "JPY": 5000, "USD": 12000 } });
        assert_eq!(super::paid_amounts(&detail), "5000 JPY, 120.00 USD");
        assert_eq!(super::paid_amounts(&serde_json::json!({ "paid_minor": {} })), "nothing");
    }
}
