//! Cron expressions for plugin schedules, in UTC: five fields, `minute hour day-of-month
//! month day-of-week`, each `*`, a number, a range `a-b`, a list `a,b`, or a step `*/n` or
//! `a-b/n`; months and days of the week may be written as names (`jan`, `mon`); day of week
//! 0 or 7 is Sunday. As in classic cron, when both day fields are restricted a day matches
//! either. The finest slot is one minute: an expression with a sixth (seconds) field is
//! refused.

use std::fmt;

/// A parsed expression: for each field, the values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month and day-of-week fields were each restricted (not `*`).
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() == 6 {
            return Err("has a seconds field; schedules fire at most once a minute: use 5 fields".into());
        }
        if fields.len() != 5 {
            return Err(format!(
                "must have 5 fields (minute hour day-of-month month day-of-week), not {}",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day-of-month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Self {
            text: fields.join(" "),
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days: u32::try_from(days).unwrap_or(0),
            months: u16::try_from(months).unwrap_or(0),
            weekdays: u8::try_from(weekdays).unwrap_or(0),
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        })
    }

    /// The first slot (a whole minute, in milliseconds since the epoch) strictly after `after_ms`.
    /// Every expression matches within 4 years plus a leap cycle, so the search ends.
    pub fn next_after(&self, after_ms: i64) -> i64 {
        let mut at = (after_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let limit = at + 9 * 366 * DAY_MS;
        while at < limit {
            let day_start = at.div_euclid(DAY_MS) * DAY_MS;
            if !self.day_matches(day_start) {
                at = day_start + DAY_MS;
                continue;
            }
            let minute_of_day = (at - day_start) / MINUTE_MS;
            let (hour, minute) = (minute_of_day / 60, minute_of_day % 60);
            if self.hours & (1 << hour) == 0 {
                at = day_start + (hour + 1) * 60 * MINUTE_MS;
                continue;
            }
            if self.minutes & (1 << minute) == 0 {
                at += MINUTE_MS;
                continue;
            }
            return at;
        }
        // Unreachable for a parsed expression (February 29 recurs within 8 years); a far
        // future slot never fires rather than firing wrongly.
        i64::MAX
    }

    fn day_matches(&self, day_start: i64) -> bool {
        let (_, month, day) = nexus_money::period::civil(day_start);
        if self.months & (1 << month) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday.
        let weekday = (day_start.div_euclid(DAY_MS) + 4).rem_euclid(7);
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The bit set of the values one field matches.
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("{name}: step {step:?} is not a number"))?;
                if step == 0 {
                    return Err(format!("{name}: a step must be at least 1"));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, name, min, max, names)?, value(high, name, min, max, names)?)
        } else {
            let single = value(range, name, min, max, names)?;
            (single, if part.contains('/') { max } else { single })
        };
        if low > high {
            return Err(format!("{name}: range {range} runs backwards"));
        }
        let mut at = low;
        while at <= high {
            set |= 1 << at;
            at += step;
        }
    }
    Ok(set)
}

fn value(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|n| *n == lower) {
        // Month names count from 1 (the field's minimum), weekday names from 0 (Sunday).
        return Ok(u32::try_from(index).unwrap_or(0) + min);
    }
    let number: u32 = text.parse().map_err(|_| format!("{name}: {text:?} is not a number or a name"))?;
    if !(min..=max).contains(&number) {
        return Err(format!("{name}: {number} is outside {min}-{max}"));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC date and time.
    fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        let month_start = nexus_money::period::add_months(0, (year - 1970) * 12 + i64::from(month) - 1).unwrap();
        month_start + i64::from(day - 1) * DAY_MS + hour * 3_600_000 + minute * MINUTE_MS
    }

    #[test]
    fn finds_the_next_slot_of_common_expressions() {
        let start = at(2026, 12, 6, 12, 30); // a Sunday
        let next = |text: &str| Cron::parse(text).unwrap().next_after(start);
        assert_eq!(next("* * * * *"), at(2026, 12, 6, 12, 31));
        assert_eq!(next("*/15 * * * *"), at(2026, 12, 6, 12, 45));
        assert_eq!(next("0 3 * * *"), at(2026, 12, 7, 3, 0));
        assert_eq!(next("30 12 * * *"), at(2026, 12, 7, 12, 30), "strictly after");
        assert_eq!(next("0 9 * * mon-fri"), at(2026, 12, 7, 9, 0));
        assert_eq!(next("0 0 1 * *"), at(2027, 1, 1, 0, 0));
        assert_eq!(next("0 0 29 feb *"), at(2028, 2, 29, 0, 0));
        assert_eq!(next("0 12 * * 0"), at(2026, 12, 13, 12, 0));
        assert_eq!(next("0 12 * * 7"), at(2026, 12, 13, 12, 0), "7 is Sunday too");
        // Both day fields restricted: either matches (the 1st, or a Monday).
        assert_eq!(next("0 0 1 * 1"), at(2026, 12, 7, 0, 0));
        assert_eq!(next("5,10 4-5 * * *"), at(2026, 12, 7, 4, 5));
    }

    #[test]
    fn refuses_what_is_not_a_five_field_expression() {
        let refused = |text: &str| Cron::parse(text).unwrap_err();
        assert!(refused("*/30 * * * * *").contains("at most once a minute"));
        assert!(refused("* * *").contains("must have 5 fields"));
        assert_eq!(refused("60 * * * *"), "minute: 60 is outside 0-59");
        assert_eq!(refused("* * * * */0"), "day-of-week: a step must be at least 1");
        assert_eq!(refused("5-1 * * * *"), "minute: range 5-1 runs backwards");
        assert_eq!(refused("* * * smarch *"), "month: \"smarch\" is not a number or a name");
        assert_eq!(Cron::parse(" 0  3 * * * ").unwrap().to_string(), "0 3 * * *");
    }
}
