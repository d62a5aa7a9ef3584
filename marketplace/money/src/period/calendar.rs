//! The proleptic Gregorian calendar in UTC, on i64 milliseconds since the Unix epoch: a day
//! number to and from a civil date (Howard Hinnant's `days_from_civil` / `civil_from_days`,
//! which count in 400-year eras of exactly 146,097 days and start each year on March 1st so
//! the leap day is the last day of its year), and calendar-month arithmetic on top.
//!
//! Written here rather than taken from chrono or time: the crate stays free of dependencies
//! for what is thirty lines of integer arithmetic, and every step is exact.

use crate::MoneyError;

/// Milliseconds in a UTC day. UTC days in Unix time have no leap seconds, so every day is
/// exactly this long.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Days from 0000-03-01 (the start of Hinnant's era 0) to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

/// Days in one 400-year Gregorian era (97 leap years in 400).
const DAYS_PER_ERA: i64 = 146_097;

/// Beyond this many years from year 0 no instant fits in i64 milliseconds (the range is about
/// ±292 million years); checking it first keeps the day arithmetic far from overflow, and the
/// checked multiplication below settles the last few years exactly.
const MAX_YEAR: i64 = 300_000_000;

/// The UTC civil date `(year, month 1–12, day 1–31)` of an instant. Infallible for every
/// i64: the day number of i64::MIN ms is about −10^11, far inside the era arithmetic.
pub fn civil(at_ms: i64) -> (i64, u32, u32) {
    civil_from_days(at_ms.div_euclid(MS_PER_DAY))
}

/// `months` calendar months after `anchor_ms` (before it when negative), at the same UTC
/// time of day, the day clamped to the end of a shorter month: Jan 31 + 1 month is Feb 28
/// (29 in a leap year). Always computed from the anchor, never chained, so Jan 31 + 2
/// months is Mar 31, not Mar 28; callers that need the k-th month after an anchor ask for
/// `k` months rather than adding one month k times.
pub fn add_months(anchor_ms: i64, months: i64) -> Result<i64, MoneyError> {
    let (year, month, day) = civil(anchor_ms);
    let time_of_day = anchor_ms.rem_euclid(MS_PER_DAY);
    let out_of_range = || MoneyError::InvalidPeriod("the date falls outside the range of i64 milliseconds".into());
    let index = year.checked_mul(12).and_then(|m| m.checked_add(i64::from(month) - 1)).ok_or_else(out_of_range)?;
    let index = index.checked_add(months).ok_or_else(out_of_range)?;
    let (year, month) = (index.div_euclid(12), (index.rem_euclid(12) + 1) as u32);
    if !(-MAX_YEAR..=MAX_YEAR).contains(&year) {
        return Err(out_of_range());
    }
    let days = days_from_civil(year, month, day.min(days_in_month(year, month)));
    days.checked_mul(MS_PER_DAY).and_then(|ms| ms.checked_add(time_of_day)).ok_or_else(out_of_range)
}

/// The instant 00:00 UTC on the first day of a month (`month` 1–12, checked by the caller),
/// or an error when that instant does not fit in i64 milliseconds.
pub(crate) fn month_start(year: i64, month: u32) -> Result<i64, MoneyError> {
    if !(-MAX_YEAR..=MAX_YEAR).contains(&year) {
        return Err(MoneyError::InvalidPeriod("the year falls outside the range of i64 milliseconds".into()));
    }
    days_from_civil(year, month, 1)
        .checked_mul(MS_PER_DAY)
        .ok_or_else(|| MoneyError::InvalidPeriod("the month falls outside the range of i64 milliseconds".into()))
}

pub(crate) fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (valid `month` and `day`, |year| ≤ [`MAX_YEAR`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years start on March 1st, so January and February belong to the previous year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // 0..=399
    let month_from_march = i64::from((month + 9) % 12); // March 0 … February 11
    // 153 days per five months from March (31+30+31+30+31): the day of the year, exactly.
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT
}

/// The civil date of a day number since 1970-01-01; the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + EPOCH_SHIFT;
    let era = days.div_euclid(DAYS_PER_ERA);
    let day_of_era = days - era * DAYS_PER_ERA; // 0..=146_096
    // Removes the leap days before this one (one per 4 years, none per 100, one per 400).
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    // The casts are exact: day 1..=31 and month 1..=12 by construction.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = (if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 }) as u32;
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: i64 = 3_600_000;

    fn at(year: i64, month: u32, day: u32, time_ms: i64) -> i64 {
        days_from_civil(year, month, day) * MS_PER_DAY + time_ms
    }

    #[test]
    fn known_days_match_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2024-02-29T12:00:00Z is 1709208000 seconds.
        assert_eq!(at(2024, 2, 29, 12 * HOUR), 1_709_208_000_000);
        assert_eq!(civil(1_709_208_000_000), (2024, 2, 29));
        // Before the epoch and before the Gregorian reform (proleptic): 1900 is not a leap
        // year, 1600 is.
        assert_eq!(days_from_civil(1969, 7, 20), -165);
        assert_eq!(civil_from_days(days_from_civil(1900, 3, 1) - 1), (1900, 2, 28));
        assert_eq!(civil_from_days(days_from_civil(1600, 3, 1) - 1), (1600, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(0, 1, 1) - 1), (-1, 12, 31));
        assert_eq!(civil(i64::MIN).0, -292_275_055);
        assert_eq!(civil(i64::MAX).0, 292_278_994);
    }

    #[test]
    fn months_clamp_to_the_end_of_a_shorter_month_from_the_anchor() {
        let time = 13 * HOUR + 45 * 60_000 + 7_123;
        assert_eq!(add_months(at(2024, 1, 31, time), 1), Ok(at(2024, 2, 29, time)));
        assert_eq!(add_months(at(2023, 1, 31, time), 1), Ok(at(2023, 2, 28, time)));
        assert_eq!(add_months(at(2023, 1, 31, time), 2), Ok(at(2023, 3, 31, time)));
        assert_eq!(add_months(at(2023, 1, 31, time), 3), Ok(at(2023, 4, 30, time)));
        assert_eq!(add_months(at(2024, 2, 29, time), 12), Ok(at(2025, 2, 28, time)));
        assert_eq!(add_months(at(2024, 2, 29, time), 48), Ok(at(2028, 2, 29, time)));
        assert_eq!(add_months(at(2024, 3, 31, time), -1), Ok(at(2024, 2, 29, time)));
        assert_eq!(add_months(at(2024, 11, 15, 0), 2), Ok(at(2025, 1, 15, 0)));
        // Before the epoch, where the day number and the time of day are negative / floored.
        assert_eq!(add_months(-1, 1), Ok(at(1970, 1, 31, MS_PER_DAY - 1)));
        assert_eq!(add_months(at(1960, 1, 31, HOUR), 1), Ok(at(1960, 2, 29, HOUR)));
        assert_eq!(add_months(0, 0), Ok(0));
    }

    #[test]
    fn months_beyond_i64_milliseconds_are_refused() {
        assert!(matches!(add_months(0, i64::MAX), Err(MoneyError::InvalidPeriod(_))));
        assert!(matches!(add_months(0, i64::MIN), Err(MoneyError::InvalidPeriod(_))));
        assert!(matches!(add_months(i64::MAX, 1), Err(MoneyError::InvalidPeriod(_))));
        assert!(matches!(add_months(i64::MIN, -1), Err(MoneyError::InvalidPeriod(_))));
        assert!(matches!(month_start(MAX_YEAR + 1, 1), Err(MoneyError::InvalidPeriod(_))));
    }

    proptest! {
        #[test]
        fn days_and_dates_round_trip(days in -110_000_000_000i64..110_000_000_000) {
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month));
            prop_assert!(day >= 1 && day <= days_in_month(year, month));
            prop_assert_eq!(days_from_civil(year, month, day), days);
        }

        #[test]
        fn consecutive_days_are_consecutive_dates(days in -1_000_000i64..1_000_000) {
            let (year, month, day) = civil_from_days(days);
            let next = civil_from_days(days + 1);
            let expected = if day < days_in_month(year, month) {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
            prop_assert_eq!(next, expected);
        }

        #[test]
        fn adding_months_keeps_the_time_and_the_day_when_it_exists(anchor in -10_000_000_000_000i64..10_000_000_000_000, months in -2_400i64..2_400) {
            let later = add_months(anchor, months).unwrap();
            prop_assert_eq!(later.rem_euclid(MS_PER_DAY), anchor.rem_euclid(MS_PER_DAY));
            let (year, month, day) = civil(anchor);
            let (later_year, later_month, later_day) = civil(later);
            prop_assert_eq!(later_year * 12 + i64::from(later_month), year * 12 + i64::from(month) + months);
            prop_assert_eq!(later_day, day.min(days_in_month(later_year, later_month)));
        }
    }
}
