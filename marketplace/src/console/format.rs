//! Figures as pages show them: amounts in their currency's decimals, instants as UTC dates.

/// An integer however many references deep templates hand it over.
pub trait Minor {
    fn minor(&self) -> i64;
}

impl Minor for i64 {
    fn minor(&self) -> i64 {
        *self
    }
}

impl<T: Minor + ?Sized> Minor for &T {
    fn minor(&self) -> i64 {
        (**self).minor()
    }
}

/// `12.50 EUR`: minor units in the currency's own decimals.
pub fn money(minor: impl Minor, currency: impl AsRef<str>) -> String {
    let (minor, currency) = (minor.minor(), currency.as_ref());
    nexus_money::Currency::from_code(currency)
        .map_or_else(|_| format!("{minor} {currency}"), |c| nexus_money::Money::new(minor, c).to_string())
}

/// `2026-12-02 14:05 UTC` for milliseconds since the epoch.
pub fn when(ms: impl Minor) -> String {
    let ms = ms.minor();
    let days = ms.div_euclid(86_400_000);
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_calendar_days_of_the_epoch_count() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(when(1_796_220_300_000), "2026-12-02 14:05 UTC");
        assert_eq!(when(-86_400_000), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn amounts_use_the_currency_decimals() {
        assert_eq!(money(1250, "EUR"), "12.50 EUR");
        assert_eq!(money(-3, "JPY"), "-3 JPY");
        assert_eq!(money(5, "XXQ"), "5 XXQ");
    }
}
