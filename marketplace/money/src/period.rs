//! Billing periods: calendar months and years anchored at the instant a subscription
//! started, proration of a price over what remains of a period, and the `YYYY-MM` labels of
//! calendar months that statements are named by.
//!
//! Every instant is i64 milliseconds since the Unix epoch, in UTC; there are no time zones
//! here, so a period boundary is the same instant for every tenant and every server. Periods
//! are half-open, `[start, end)`: an instant on a boundary belongs to the period it starts,
//! so consecutive periods share their boundary and no instant is billed twice or never.

mod calendar;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use calendar::{MS_PER_DAY, add_months, civil};

use crate::{MoneyError, round_half_up};

/// How long a billing period is. A year is twelve calendar months from the anchor, so a
/// yearly plan started on Feb 29 renews on Feb 28 in the years without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    /// Calendar months in one period.
    pub const fn months(self) -> u32 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = MoneyError;

    /// Exactly the names serde uses, `month` or `year`: no other spellings, so the API and
    /// the database agree on one.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "month" => Ok(Interval::Month),
            "year" => Ok(Interval::Year),
            _ => Err(MoneyError::UnknownInterval(name.to_owned())),
        }
    }
}

/// A half-open span of time, `[start_ms, end_ms)`, in UTC milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Period {
    /// Whether the instant lies in the period: the start is in, the end is not.
    pub fn contains(&self, at_ms: i64) -> bool {
        self.start_ms <= at_ms && at_ms < self.end_ms
    }
}

/// The billing period numbered `index` of a plan anchored at `anchor_ms`: period k is
/// `[anchor + k intervals, anchor + (k+1) intervals)`. Both bounds are computed from the
/// anchor ([`add_months`] never chains), so a plan started on Jan 31 bills Jan 31, Feb 28,
/// Mar 31, … and consecutive periods always meet exactly.
pub fn period_at(anchor_ms: i64, interval: Interval, index: u32) -> Result<Period, MoneyError> {
    let months = i64::from(interval.months());
    let start_months = i64::from(index) * months; // at most u32::MAX × 12: no overflow
    Ok(Period { start_ms: add_months(anchor_ms, start_months)?, end_ms: add_months(anchor_ms, start_months + months)? })
}

/// The index and bounds of the billing period of a plan anchored at `anchor_ms` that
/// contains `at_ms`. An instant before the anchor is in no period: an error, not period 0,
/// so a clock or data mistake does not silently bill the first period.
pub fn period_containing(anchor_ms: i64, interval: Interval, at_ms: i64) -> Result<(u32, Period), MoneyError> {
    if at_ms < anchor_ms {
        return Err(MoneyError::InvalidPeriod(format!(
            "{at_ms} ms is before the plan's anchor at {anchor_ms} ms: no billing period contains it"
        )));
    }
    let ((anchor_year, anchor_month, _), (year, month, _)) = (civil(anchor_ms), civil(at_ms));
    // Both years are within ±3·10^8, so the month count cannot overflow; at ≥ anchor keeps it ≥ 0.
    let elapsed_months = (year - anchor_year) * 12 + i64::from(month) - i64::from(anchor_month);
    let mut index = elapsed_months / i64::from(interval.months());
    // The period counted this way starts in `at`'s month or earlier, and the next one starts
    // in a later month. When it starts in `at`'s own month, on a later day or hour, `at` is
    // still in the period before (which exists: period 0 starts at the anchor, ≤ `at`).
    if add_months(anchor_ms, index * i64::from(interval.months()))? > at_ms {
        index -= 1;
    }
    let index = u32::try_from(index)
        .map_err(|_| MoneyError::InvalidPeriod(format!("{at_ms} ms is more than u32::MAX periods after the anchor")))?;
    Ok((index, period_at(anchor_ms, interval, index)?))
}

/// The part of `amount_minor` for what remains of `period` from `from_ms` to its end:
/// `amount × (end − from) / (end − start)`, exact in i128 and rounded once, half up (half
/// away from zero, so a negative amount prorates to the negation of the positive one).
/// `from_ms` is clamped into `[start, end]`: from before the start the whole amount remains,
/// from the end or later nothing does. The result lies between 0 and `amount_minor`.
///
/// A plan change mid-period charges the new plan's remainder and credits the old plan's
/// (Shopify's rule). Upgrading from 5.00 to 15.00 on day 15 of a 30-day period: the unused
/// old plan is `prorate(500, p, mid)` = 250, the new plan's remainder `prorate(1500, p, mid)`
/// = 750, so the upgrade costs 500 more; a downgrade the other way credits the 500. The part
/// already used is `amount − prorate(..)`, never a second rounding, so used + remaining is
/// always exactly the amount.
pub fn prorate(amount_minor: i64, period: Period, from_ms: i64) -> Result<i64, MoneyError> {
    let Period { start_ms, end_ms } = period;
    if end_ms <= start_ms {
        return Err(MoneyError::InvalidPeriod(format!(
            "a period ends after it starts; [{start_ms}, {end_ms}) ms does not"
        )));
    }
    let from = from_ms.clamp(start_ms, end_ms);
    let remaining = i128::from(end_ms) - i128::from(from);
    let length = i128::from(end_ms) - i128::from(start_ms);
    round_half_up(i128::from(amount_minor), remaining, length)
}

/// The `YYYY-MM` label of the UTC calendar month containing `at_ms`, such as `2024-02`.
/// Years outside 0000–9999 print with their sign or extra digits and do not parse back.
pub fn month_label(at_ms: i64) -> String {
    let (year, month, _) = civil(at_ms);
    format!("{year:04}-{month:02}")
}

/// The `YYYY-MM-DD` label of the UTC day containing `at_ms`.
pub fn day_label(at_ms: i64) -> String {
    let (year, month, day) = civil(at_ms);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The UTC calendar month a `YYYY-MM` label names, `[the 1st 00:00, the next 1st 00:00)`.
/// Exactly four digits, a hyphen and a month 01–12: no signs, spaces, days or other
/// separators, so one month has one label.
pub fn parse_month(label: &str) -> Result<Period, MoneyError> {
    let refuse =
        || MoneyError::InvalidPeriod(format!("`{label}` is not a month: expected `YYYY-MM`, such as `2024-02`"));
    let bytes = label.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 7 || bytes[4] != b'-' || !digits(0..4) || !digits(5..7) {
        return Err(refuse());
    }
    // Only ASCII digits remain in each part, so both parse and fit.
    let year: i64 = label[..4].parse().map_err(|_| refuse())?;
    let month: u32 = label[5..].parse().map_err(|_| refuse())?;
    if !(1..=12).contains(&month) {
        return Err(refuse());
    }
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    Ok(Period { start_ms: calendar::month_start(year, month)?, end_ms: calendar::month_start(next_year, next_month)? })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: i64 = 3_600_000;

    /// An instant from its UTC date and time of day, built on `parse_month`, whose bounds
    /// are checked against known epoch milliseconds below.
    fn at(label: &str, day: i64, time_ms: i64) -> i64 {
        parse_month(label).unwrap().start_ms + (day - 1) * MS_PER_DAY + time_ms
    }

    #[test]
    fn intervals_have_one_name_each() {
        assert_eq!("month".parse::<Interval>(), Ok(Interval::Month));
        assert_eq!("year".parse::<Interval>(), Ok(Interval::Year));
        assert_eq!(Interval::Year.as_str(), "year");
        assert_eq!(serde_json::to_string(&Interval::Month).unwrap(), r#""month""#);
        assert_eq!(serde_json::from_str::<Interval>(r#""year""#).unwrap(), Interval::Year);
        assert!(serde_json::from_str::<Interval>(r#""Month""#).is_err());
        let refused = "Monthly".parse::<Interval>();
        assert_eq!(refused, Err(MoneyError::UnknownInterval("Monthly".into())));
        assert_eq!(refused.unwrap_err().to_string(), "unknown interval `Monthly`: expected `month` or `year`");
    }

    #[test]
    fn periods_start_inclusive_and_end_exclusive() {
        let anchor = at("2024-01", 31, 10 * HOUR);
        let (feb_29, mar_31) = (at("2024-02", 29, 10 * HOUR), at("2024-03", 31, 10 * HOUR));
        let first = Period { start_ms: anchor, end_ms: feb_29 };
        assert_eq!(period_containing(anchor, Interval::Month, anchor), Ok((0, first)));
        assert_eq!(period_containing(anchor, Interval::Month, feb_29 - 1), Ok((0, first)));
        let second = Period { start_ms: feb_29, end_ms: mar_31 };
        assert_eq!(period_containing(anchor, Interval::Month, feb_29), Ok((1, second)));
        // Mid-March, before the 31st: still the period that started in February.
        assert_eq!(period_containing(anchor, Interval::Month, at("2024-03", 15, 0)), Ok((1, second)));
        assert_eq!(
            period_containing(anchor, Interval::Month, mar_31),
            Ok((2, period_at(anchor, Interval::Month, 2).unwrap()))
        );
        assert_eq!(period_at(anchor, Interval::Month, 2).unwrap().end_ms, at("2024-04", 30, 10 * HOUR));
        assert!(matches!(period_containing(anchor, Interval::Month, anchor - 1), Err(MoneyError::InvalidPeriod(_))));
    }

    #[test]
    fn a_year_is_twelve_months_from_the_anchor() {
        let anchor = at("2024-02", 29, 0);
        let renewal = at("2025-02", 28, 0);
        assert_eq!(period_at(anchor, Interval::Year, 0), Ok(Period { start_ms: anchor, end_ms: renewal }));
        assert_eq!(period_containing(anchor, Interval::Year, renewal - 1).map(|(index, _)| index), Ok(0));
        assert_eq!(period_containing(anchor, Interval::Year, renewal).map(|(index, _)| index), Ok(1));
        assert_eq!(period_at(anchor, Interval::Year, 3).map(|p| p.end_ms), Ok(at("2028-02", 29, 0)));
    }

    #[test]
    fn periods_work_across_the_epoch_and_refuse_what_i64_cannot_hold() {
        let anchor = at("1969-12", 15, 6 * HOUR);
        assert_eq!(
            period_containing(anchor, Interval::Month, 0),
            Ok((0, Period { start_ms: anchor, end_ms: at("1970-01", 15, 6 * HOUR) }))
        );
        assert_eq!(period_containing(-MS_PER_DAY, Interval::Year, 0).map(|(index, _)| index), Ok(0));
        assert!(matches!(period_at(0, Interval::Month, u32::MAX), Err(MoneyError::InvalidPeriod(_))));
        assert!(matches!(period_containing(0, Interval::Month, i64::MAX), Err(MoneyError::InvalidPeriod(_))));
    }

    #[test]
    fn shopify_upgrade_mid_period_charges_the_prorated_difference() {
        let start = at("2024-04", 1, 0);
        let period = Period { start_ms: start, end_ms: start + 30 * MS_PER_DAY };
        let middle = start + 15 * MS_PER_DAY;
        let credit = prorate(500, period, middle).unwrap();
        let charge = prorate(1500, period, middle).unwrap();
        assert_eq!((credit, charge, charge - credit), (250, 750, 500));
    }

    #[test]
    fn proration_is_clamped_and_rounds_half_up_once() {
        let period = Period { start_ms: 0, end_ms: 3 };
        assert_eq!(prorate(1_000, period, 0), Ok(1_000));
        assert_eq!(prorate(1_000, period, 3), Ok(0));
        assert_eq!(prorate(1_000, period, -50), Ok(1_000), "from before the start: all of it");
        assert_eq!(prorate(1_000, period, 50), Ok(0), "from after the end: nothing");
        // One minor unit over three parts: 2/3 rounds to 1, 1/3 to 0.
        assert_eq!((prorate(1, period, 1), prorate(1, period, 2)), (Ok(1), Ok(0)));
        // Exactly half rounds up (away from zero for a negative amount).
        let halves = Period { start_ms: 0, end_ms: 2 };
        assert_eq!((prorate(1, halves, 1), prorate(-1, halves, 1)), (Ok(1), Ok(-1)));
        // 5 cents over 30 days from day 15: 2.5 rounds to 3.
        assert_eq!(prorate(5, Period { start_ms: 0, end_ms: 30 * MS_PER_DAY }, 15 * MS_PER_DAY), Ok(3));
        assert_eq!(prorate(i64::MAX, Period { start_ms: i64::MIN, end_ms: i64::MAX }, i64::MIN), Ok(i64::MAX));
        for empty in [Period { start_ms: 5, end_ms: 5 }, Period { start_ms: 5, end_ms: 4 }] {
            assert!(matches!(prorate(100, empty, 5), Err(MoneyError::InvalidPeriod(_))));
        }
    }

    #[test]
    fn months_have_one_label_each() {
        assert_eq!(parse_month("2024-02"), Ok(Period { start_ms: 1_706_745_600_000, end_ms: 1_709_251_200_000 }));
        assert_eq!(parse_month("1969-12"), Ok(Period { start_ms: -31 * MS_PER_DAY, end_ms: 0 }));
        assert_eq!(parse_month("2023-12").map(|p| p.end_ms), parse_month("2024-01").map(|p| p.start_ms));
        assert_eq!(month_label(1_709_251_200_000 - 1), "2024-02");
        assert_eq!(month_label(1_709_251_200_000), "2024-03");
        assert_eq!(month_label(-1), "1969-12");
        for refused in
            ["2024-2", "2024-13", "2024-00", "24-02", "2024-02-01", " 2024-02", "2024/02", "+024-02", "２０24-02", ""]
        {
            assert!(matches!(parse_month(refused), Err(MoneyError::InvalidPeriod(_))), "{refused}");
        }
        assert_eq!(
            parse_month("2024-2").unwrap_err().to_string(),
            "invalid period: `2024-2` is not a month: expected `YYYY-MM`, such as `2024-02`"
        );
    }

    /// Instants from year 0 to 9999, where month labels round-trip.
    const LABELLED: std::ops::Range<i64> = -62_167_219_200_000..253_402_300_800_000;

    proptest! {
        #[test]
        fn periods_are_contiguous_and_increasing(anchor in -10_000_000_000_000i64..10_000_000_000_000, index in 0u32..2_000, yearly in any::<bool>()) {
            let interval = if yearly { Interval::Year } else { Interval::Month };
            let this = period_at(anchor, interval, index).unwrap();
            let next = period_at(anchor, interval, index + 1).unwrap();
            prop_assert!(this.start_ms < this.end_ms);
            prop_assert_eq!(this.end_ms, next.start_ms);
            prop_assert!(next.start_ms < next.end_ms);
        }

        #[test]
        fn the_containing_period_contains_the_instant(anchor in -10_000_000_000_000i64..10_000_000_000_000, offset in 0i64..5_000_000_000_000, yearly in any::<bool>()) {
            let interval = if yearly { Interval::Year } else { Interval::Month };
            let (index, period) = period_containing(anchor, interval, anchor + offset).unwrap();
            prop_assert!(period.contains(anchor + offset));
            prop_assert_eq!(period_at(anchor, interval, index), Ok(period));
        }

        #[test]
        fn proration_conserves_and_stays_within_the_amount(amount in 0i64..1_000_000_000_000, start in -1_000_000_000_000i64..1_000_000_000_000, length in 1i64..100_000_000_000, from in -200_000_000_000i64..200_000_000_000) {
            let period = Period { start_ms: start, end_ms: start + length };
            let from = start + from;
            let remaining = prorate(amount, period, from).unwrap();
            let used = amount - remaining;
            prop_assert!((0..=amount).contains(&remaining));
            prop_assert_eq!(remaining + used, amount);
            // Within half a minor unit of the exact remainder: |2·remaining·length − 2·amount·left| ≤ length.
            let left = i128::from(period.end_ms - from.clamp(period.start_ms, period.end_ms));
            let error = 2 * i128::from(remaining) * i128::from(length) - 2 * i128::from(amount) * left;
            prop_assert!(error.abs() <= i128::from(length));
            // Later is never more: proration only falls as the period runs out.
            prop_assert!(prorate(amount, period, from + 1).unwrap() <= remaining);
            prop_assert_eq!(prorate(-amount, period, from).unwrap(), -remaining);
        }

        #[test]
        fn month_labels_round_trip(at_ms in LABELLED) {
            let label = month_label(at_ms);
            let month = parse_month(&label).unwrap();
            prop_assert!(month.contains(at_ms));
            prop_assert_eq!(month_label(month.start_ms), label.clone());
            prop_assert_eq!(month_label(month.end_ms - 1), label);
            prop_assert_eq!(civil(month.start_ms).2, 1);
            prop_assert_eq!(month.start_ms.rem_euclid(MS_PER_DAY), 0);
        }
    }
}
