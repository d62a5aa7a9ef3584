//! How instants are written for people and files: below everything that shows one (reviews,
//! billing's CSVs).

/// An instant as CSVs write it: ISO 8601 in UTC, `2026-11-03T14:05:09Z`.
pub fn iso(ms: i64) -> String {
    let (year, month, day) = nexus_money::period::civil(ms);
    let seconds = ms.rem_euclid(86_400_000) / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}
