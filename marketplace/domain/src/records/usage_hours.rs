//! Usage summed per install, meter and UTC hour (`usage_hours`, migration 0020), so that a
//! billing run reads a few rows per install instead of every invocation of its period.
//!
//! - Written only with the usage rows it sums, in their transaction (`records.rs`: [`add`] for
//!   rows whose insertion is known, [`script_statement`] inside a SQLite batch's script), so the
//!   two commit or roll back together. Invocation and usage rows are never updated or deleted
//!   (uninstalls keep them; there is no retention), so nothing else has to move it.
//! - Read by billing through one rule, [`segment_units`] (whose pure half is [`sources`]):
//!   the whole hours inside a segment from here, the partial hours at its two edges from the
//!   invocation rows, which gives exactly the sum of the invocation rows.
//! - Recomputed from the invocation rows by `ledger verify` ([`check`]) and by [`rebuild`]
//!   (also migration 0020's backfill: the same statement).

use nexus_registry::db::backend_of;
use std::collections::BTreeMap;

use nexus_money::period::Period;

use crate::checks::Check;
use crate::error::MarketError;
use crate::market::Market;

/// An hour in milliseconds: the grain of `usage_hours`.
pub const HOUR_MS: i64 = 3_600_000;

/// The first millisecond of the UTC hour holding `at`.
pub fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(HOUR_MS)
}

/// [`hour_of`] an invocation's `i.started_at` in SQL. `%` keeps the dividend's sign on both
/// backends, so the remainder is made non-negative as `rem_euclid` makes it.
const HOUR_OF_STARTED_AT: &str = "i.started_at - ((i.started_at % 3600000) + 3600000) % 3600000";

/// Units to add, by (install, meter, hour start).
pub(crate) type Hours<'a> = BTreeMap<(&'a str, &'a str, i64), i64>;

/// Keys per multi-row upsert: 4 values a key, far below both backends' parameter limits.
const KEYS_PER_STATEMENT: usize = 1_000;

/// The upsert that adds units to an hour's row (or starts it).
const ADD: &str =
    "ON CONFLICT (install_id, meter, hour_start) DO UPDATE SET units = usage_hours.units + excluded.units";

/// Adds `hours` to their rows on `conn` (inside the transaction that writes the usage rows
/// they sum): one statement for up to [`KEYS_PER_STATEMENT`] keys. The keys are sorted (a
/// `BTreeMap`), so two writers lock shared rows in the same order on PostgreSQL and never
/// wait for each other in a cycle; each key once, as a PostgreSQL upsert requires.
pub(crate) async fn add(conn: &mut sqlx::AnyConnection, hours: &Hours<'_>) -> Result<(), sqlx::Error> {
    let keys: Vec<_> = hours.iter().filter(|(_, units)| **units != 0).collect();
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|n| format!("(${}, ${}, ${}, ${})", 4 * n + 1, 4 * n + 2, 4 * n + 3, 4 * n + 4))
            .collect();
        let sql = backend_of(conn).positional(format!(
            "INSERT INTO usage_hours (install_id, meter, hour_start, units) VALUES {} {ADD}",
            values.join(", ")
        ));
        let mut query = sqlx::query(&sql);
        for ((install, meter, hour), units) in chunk {
            query = query.bind(*install).bind(*meter).bind(*hour).bind(**units);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// For a SQLite batch script, whose rows the applied-once index may refuse only as it runs:
/// adds the usage entries `(invocation id, meter, units)` (each three parameter numbers the
/// script already binds) of the invocations that exist, that is that the script inserted,
/// summed per install, meter and hour in SQL. One statement for the whole batch.
pub(crate) fn script_statement(entries: &[(usize, usize, usize)]) -> String {
    let values: Vec<String> = entries.iter().map(|(id, meter, units)| format!("(${id}, ${meter}, ${units})")).collect();
    format!(
        "INSERT INTO usage_hours (install_id, meter, hour_start, units) \
         SELECT i.install_id, u.column2, {HOUR_OF_STARTED_AT}, SUM(u.column3) \
         FROM (VALUES {}) AS u JOIN invocations i ON i.id = u.column1 \
         GROUP BY i.install_id, u.column2, {HOUR_OF_STARTED_AT} {ADD};\n",
        values.join(", ")
    )
}

/// Where a segment's units are read: a range of whole hours from `usage_hours`, and the
/// ranges of invocation start times read from the invocation rows (the partial hours at the
/// edges, or the whole segment when it holds no whole hour). Together exactly the segment,
/// each instant once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub hours: Option<(i64, i64)>,
    pub invocations: Vec<(i64, i64)>,
}

/// The rule billing reads usage by, for the segment `[start, end)`.
pub fn sources(segment: Period) -> Sources {
    let (start, end) = (segment.start_ms, segment.end_ms);
    if start >= end {
        return Sources { hours: None, invocations: Vec::new() };
    }
    let first = if hour_of(start) == start { start } else { hour_of(start).saturating_add(HOUR_MS) };
    let last = hour_of(end);
    if first >= last {
        return Sources { hours: None, invocations: vec![(start, end)] };
    }
    let edges = [(start, first), (last, end)].into_iter().filter(|(from, to)| from < to).collect();
    Sources { hours: Some((first, last)), invocations: edges }
}

/// Segments per statement: each is at most three ranges of five values.
const SEGMENTS_PER_STATEMENT: usize = 250;

/// The units each segment of `segments` (install, meter, period) counts, by (install, segment
/// start): the usage rows of the install's applied invocations that started within it, read
/// by [`sources`]. One statement per [`SEGMENTS_PER_STATEMENT`] segments; a segment without
/// usage is absent.
pub async fn segment_units(
    conn: &mut sqlx::AnyConnection,
    segments: &[(&str, &str, Period)],
) -> Result<BTreeMap<(String, i64), i64>, MarketError> {
    let mut out = BTreeMap::new();
    for chunk in segments.chunks(SEGMENTS_PER_STATEMENT) {
        let (hours, invocations) = ranges_of(chunk);
        let Some(sql) = segment_statement(hours.len(), invocations.len()) else {
            continue;
        };
        let sql = backend_of(conn).positional(sql);
        // Each group sums at least one NOT NULL `units`: a NULL sum is an error, never 0.
        let mut query = sqlx::query_as::<_, (String, i64, i64)>(&sql);
        for (install, meter, start, from, to) in hours.iter().chain(&invocations) {
            query = query.bind(*install).bind(*meter).bind(*start).bind(*from).bind(*to);
        }
        for (install, start, units) in query.fetch_all(&mut *conn).await? {
            out.insert((install, start), units);
        }
    }
    Ok(out)
}

/// A range a segment is read over: (install, meter, segment start, from, to).
type Range<'a> = (&'a str, &'a str, i64, i64, i64);

/// The ranges of `segments`, by where they are read ([`sources`]): from `usage_hours`, and
/// from the invocation rows.
fn ranges_of<'a>(segments: &[(&'a str, &'a str, Period)]) -> (Vec<Range<'a>>, Vec<Range<'a>>) {
    let mut hours = Vec::new();
    let mut invocations = Vec::new();
    for (install, meter, segment) in segments {
        let read = sources(*segment);
        hours.extend(read.hours.map(|(from, to)| (*install, *meter, segment.start_ms, from, to)));
        invocations.extend(read.invocations.iter().map(|(from, to)| (*install, *meter, segment.start_ms, *from, *to)));
    }
    (hours, invocations)
}

/// The statement of [`segment_units`] for `hours` ranges read from `usage_hours` and then
/// `invocations` ranges read from the invocation rows, five parameters a range in that
/// order; `None` when there is no range.
fn segment_statement(hours: usize, invocations: usize) -> Option<String> {
    let branches = [
        (
            "h",
            hours,
            "SELECT h.install_id, h.start_ms, u.units FROM h JOIN usage_hours u ON u.install_id = h.install_id \
             AND u.meter = h.meter AND u.hour_start >= h.from_ms AND u.hour_start < h.to_ms",
        ),
        (
            "r",
            invocations,
            "SELECT r.install_id, r.start_ms, u.units FROM r JOIN invocations i ON i.install_id = r.install_id \
             AND i.started_at >= r.from_ms AND i.started_at < r.to_ms AND i.outcome = 'ok' \
             JOIN invocation_usage u ON u.invocation_id = i.id AND u.meter = r.meter",
        ),
    ];
    let (mut ctes, mut parts, mut next) = (Vec::new(), Vec::new(), 1);
    for (name, ranges, select) in branches {
        if ranges == 0 {
            continue;
        }
        let values: Vec<String> = (0..ranges)
            .map(|_| {
                let row = format!("(${}, ${}, ${}, ${}, ${})", next, next + 1, next + 2, next + 3, next + 4);
                next += 5;
                row
            })
            .collect();
        ctes.push(format!("{name} (install_id, meter, start_ms, from_ms, to_ms) AS (VALUES {})", values.join(", ")));
        parts.push(select);
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "WITH {} SELECT install_id, start_ms, CAST(SUM(units) AS BIGINT) AS units FROM ({}) AS x \
         GROUP BY install_id, start_ms",
        ctes.join(", "),
        parts.join(" UNION ALL ")
    ))
}

/// Every row `usage_hours` should have, from the invocation rows: what billing counted before
/// the table existed (the usage rows of applied invocations, by their start).
fn expected_rows() -> String {
    format!(
        "SELECT install_id, meter, hour_start, CAST(SUM(units) AS BIGINT) AS units FROM (SELECT i.install_id, u.meter, \
         {HOUR_OF_STARTED_AT} AS hour_start, u.units FROM invocations i JOIN invocation_usage u \
         ON u.invocation_id = i.id WHERE i.outcome = 'ok') AS x GROUP BY install_id, meter, hour_start"
    )
}

/// The statement that fills an empty `usage_hours` from the invocation rows (also migration
/// 0020's backfill), in key order.
pub fn rebuild_statement() -> String {
    format!(
        "INSERT INTO usage_hours (install_id, meter, hour_start, units) {} ORDER BY install_id, meter, hour_start",
        expected_rows()
    )
}

/// Replaces `usage_hours` with what the invocation rows say, on `conn` (a write transaction);
/// returns its rows. On PostgreSQL the table is locked first against writes (not reads): a
/// writer that added its hours before waits for, and is seen by, the recomputation; one that
/// adds after it commits adds to the rebuilt rows, its invocations not being in them.
pub async fn rebuild(conn: &mut sqlx::AnyConnection, backend: nexus_registry::Backend) -> Result<i64, MarketError> {
    if backend == nexus_registry::Backend::Postgres {
        sqlx::query("LOCK TABLE usage_hours IN EXCLUSIVE MODE").execute(&mut *conn).await?;
    }
    sqlx::query("DELETE FROM usage_hours").execute(&mut *conn).await?;
    sqlx::query(&rebuild_statement()).execute(&mut *conn).await?;
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM usage_hours").fetch_one(&mut *conn).await?)
}

/// Rows of differences `check` lists at most.
const MAX_DIFFERENCES: usize = 20;

/// `ledger verify`'s check: each stored hour equals the sum of its invocations' usage rows
/// (applied invocations, by start), and no hour is missing or extra. One statement, so on
/// both backends one snapshot, in which the rows and their hours committed together.
pub async fn check(market: &Market) -> Result<Check, MarketError> {
    let sql = format!(
        "SELECT install_id, meter, hour_start, CAST(SUM(units) AS BIGINT) AS off FROM ( \
         SELECT install_id, meter, hour_start, units FROM ({}) AS e \
         UNION ALL SELECT install_id, meter, hour_start, -units FROM usage_hours) AS d \
         GROUP BY install_id, meter, hour_start HAVING SUM(units) <> 0 \
         ORDER BY install_id, meter, hour_start LIMIT {MAX_DIFFERENCES}",
        expected_rows()
    );
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&sql).fetch_all(&market.db.pool).await?;
    let differences = rows
        .into_iter()
        .map(|(install, meter, hour, off)| {
            let row = format!("install {install} meter `{meter}` hour {hour}");
            format!("{row}: the invocations say {off:+} units against usage_hours")
        })
        .collect::<Vec<_>>();
    Ok(Check {
        name: "usage_hours sums the usage rows of applied invocations per install, meter and hour",
        ok: differences.is_empty(),
        differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    fn period(start_ms: i64, end_ms: i64) -> Period {
        Period { start_ms, end_ms }
    }

    #[test]
    fn hours_start_at_the_hour_below_on_both_sides_of_zero() {
        assert_eq!([hour_of(0), hour_of(1), hour_of(H - 1), hour_of(H)], [0, 0, 0, H]);
        assert_eq!([hour_of(-1), hour_of(-H), hour_of(-H - 1)], [-H, -H, -2 * H]);
    }

    #[test]
    fn a_segment_reads_whole_hours_and_its_edges_from_the_invocations() {
        let s = 100 * H;
        // Mid-hour to mid-hour: the partial hours at both edges, the whole ones between.
        assert_eq!(
            sources(period(s + 20 * 60_000, s + 5 * H + 1)),
            Sources {
                hours: Some((s + H, s + 5 * H)),
                invocations: vec![(s + 1_200_000, s + H), (s + 5 * H, s + 5 * H + 1)]
            }
        );
        // On the hour at both edges: hours only.
        assert_eq!(sources(period(s, s + 3 * H)), Sources { hours: Some((s, s + 3 * H)), invocations: vec![] });
        // Inside one hour, or across one boundary without a whole hour: invocations only.
        assert_eq!(sources(period(s + 1, s + H - 1)), Sources { hours: None, invocations: vec![(s + 1, s + H - 1)] });
        assert_eq!(sources(period(s + 1, s + H + 1)), Sources { hours: None, invocations: vec![(s + 1, s + H + 1)] });
        assert_eq!(
            sources(period(s + 1, s + 2 * H)),
            Sources { hours: Some((s + H, s + 2 * H)), invocations: vec![(s + 1, s + H)] }
        );
        // Empty.
        assert_eq!(sources(period(s, s)), Sources { hours: None, invocations: vec![] });
    }

    #[test]
    fn every_instant_of_a_segment_is_read_once() {
        // Each millisecond of a few segments around hour boundaries, sampled: in exactly one
        // range, and nothing outside the segment is.
        let s = 7 * H;
        for (start, end) in [(s - 3, s + 3), (s - 1, s + 2 * H + 1), (s, s + H), (s + 17, s + 17), (s + H - 1, s + H)] {
            let read = sources(period(start, end));
            let ranges: Vec<(i64, i64)> = read.hours.into_iter().chain(read.invocations).collect();
            for at in (start - 5..end + 5).chain([start, end - 1]) {
                let times = ranges.iter().filter(|(from, to)| *from <= at && at < *to).count();
                assert_eq!(times, usize::from(start <= at && at < end), "{at} in [{start}, {end}): {ranges:?}");
            }
        }
    }

    #[test]
    fn the_migration_backfills_with_the_rebuild_statement() {
        let flat = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let statement = flat(&rebuild_statement());
        for migration in [
            include_str!("../../migrations/sqlite/0020_usage_hours.sql"),
            include_str!("../../migrations/postgres/0020_usage_hours.sql"),
        ] {
            assert!(flat(migration).contains(&statement), "migration 0020 lacks: {statement}");
        }
    }

    #[test]
    fn a_script_sums_the_entries_of_inserted_invocations() {
        let sql = script_statement(&[(1, 39, 40), (20, 41, 42)]);
        assert!(
            sql.contains("FROM (VALUES ($1, $39, $40), ($20, $41, $42)) AS u JOIN invocations i ON i.id = u.column1"),
            "{sql}"
        );
        assert!(sql.ends_with("DO UPDATE SET units = usage_hours.units + excluded.units;\n"), "{sql}");
    }
}
