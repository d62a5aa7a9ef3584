//! GMV's figures over a window, read from the money rollups: whole months (when the report is
//! by month) and whole days from `money_rollups`, and only the parts of days at the window's
//! edges from the ledger. An edge that covers most of its day is read as that day's rollup
//! less the ledger's rest of the day, so the ledger is never read for more than half a day
//! (none at all when the window ends now and nothing was posted later). Exact either way: the
//! rollups hold the same sums of the same entries.

use std::collections::BTreeMap;

use nexus_money::{Currency, period};

use super::super::ledger::stored_currency;
use super::super::money_error;
use super::super::rollups::{Grain, month_of_day};
use crate::error::MarketError;
use crate::market::Market;

const DAY_MS: i64 = super::super::DAY_MS;

/// One part of a window and whether it adds or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// The ledger's postings in `[from, to)` ms.
    Ledger { from: i64, to: i64, sign: i64 },
    /// The rollup rows of `grain` starting on days `[from, to)`.
    Rollup { grain: Grain, from: i64, to: i64, sign: i64 },
}

/// The first day of the month after the one containing `day`.
fn next_month(day: i64) -> Result<i64, MarketError> {
    Ok(period::add_months(month_of_day(day) * DAY_MS, 1).map_err(money_error)? / DAY_MS)
}

/// How to read `[from, to)`: pure arithmetic on the bounds.
pub(super) fn pieces(from: i64, to: i64, months: bool) -> Result<Vec<Piece>, MarketError> {
    let mut out = Vec::new();
    let day = |at: i64| at.div_euclid(DAY_MS);
    let one_day = |d: i64, sign: i64| Piece::Rollup { grain: Grain::Day, from: d, to: d + 1, sign };
    let (first, last) = (day(from), day(to - 1));
    if first == last {
        let (start, end) = (first * DAY_MS, (first + 1) * DAY_MS);
        if to - from > DAY_MS / 2 {
            out.push(one_day(first, 1));
            out.push(Piece::Ledger { from: start, to: from, sign: -1 });
            out.push(Piece::Ledger { from: to, to: end, sign: -1 });
        } else {
            out.push(Piece::Ledger { from, to, sign: 1 });
        }
        return Ok(out.into_iter().filter(|p| !matches!(p, Piece::Ledger { from, to, .. } if from == to)).collect());
    }
    let (mut a, mut b) = (first, last + 1);
    if from.rem_euclid(DAY_MS) != 0 {
        let (start, end) = (first * DAY_MS, (first + 1) * DAY_MS);
        if from - start < end - from {
            out.extend([one_day(first, 1), Piece::Ledger { from: start, to: from, sign: -1 }]);
        } else {
            out.push(Piece::Ledger { from, to: end, sign: 1 });
        }
        a = first + 1;
    }
    if to.rem_euclid(DAY_MS) != 0 {
        let (start, end) = (last * DAY_MS, (last + 1) * DAY_MS);
        if to - start <= end - to {
            out.push(Piece::Ledger { from: start, to, sign: 1 });
        } else {
            out.extend([one_day(last, 1), Piece::Ledger { from: to, to: end, sign: -1 }]);
        }
        b = last;
    }
    let days = |from: i64, to: i64| Piece::Rollup { grain: Grain::Day, from, to, sign: 1 };
    let (m0, m1) = if month_of_day(a) == a { (a, month_of_day(b)) } else { (next_month(a)?, month_of_day(b)) };
    if months && m0 < m1 {
        out.extend([days(a, m0), Piece::Rollup { grain: Grain::Month, from: m0, to: m1, sign: 1 }, days(m1, b)]);
    } else {
        out.push(days(a, b));
    }
    Ok(out.into_iter().filter(|p| !matches!(p, Piece::Rollup { from, to, .. } if from >= to)).collect())
}

/// What GMV adds up per bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Amounts {
    pub gmv: i64,
    pub refunds: i64,
    /// Fees less fees returned.
    pub fees: i64,
    /// Collections.
    pub charges: i64,
    /// Refund postings: with `charges`, whether the bucket saw anything.
    pub refund_count: i64,
}

impl Amounts {
    fn add(&mut self, other: &Self, sign: i64) {
        self.gmv += sign * other.gmv;
        self.refunds += sign * other.refunds;
        self.fees += sign * other.fees;
        self.charges += sign * other.charges;
        self.refund_count += sign * other.refund_count;
    }

    /// A bucket with a collection or a refund in the window (as one read from the ledger).
    pub fn seen(&self) -> bool {
        self.charges + self.refund_count > 0
    }
}

/// The start (ms) of a day or month, a currency, a plugin and a partner ('' when not asked for).
pub(super) type Bucket = (i64, Currency, String, String);

/// Which groups to keep apart.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grouping {
    pub plugin: bool,
    pub publisher: bool,
}

/// GMV's figures in `[from, to)`, by day (or month, with `months`), currency and the
/// grouping, of one partner or all; buckets that saw nothing are left out.
pub(super) async fn read(
    market: &Market,
    from: i64,
    to: i64,
    months: bool,
    grouping: Grouping,
    publisher: Option<&str>,
) -> Result<BTreeMap<Bucket, Amounts>, MarketError> {
    let mut out: BTreeMap<Bucket, Amounts> = BTreeMap::new();
    for piece in pieces(from, to, months)? {
        let (rows, sign) = match piece {
            Piece::Ledger { from, to, sign } => (ledger(market, from, to, publisher).await?, sign),
            Piece::Rollup { grain, from, to, sign } => {
                (rollups(market, grain, from, to, grouping, publisher).await?, sign)
            }
        };
        for ((start, currency, plugin, partner), amounts) in rows {
            let plugin = if grouping.plugin { plugin } else { String::new() };
            let partner = if grouping.publisher { partner } else { String::new() };
            out.entry((start, currency, plugin, partner)).or_default().add(&amounts, sign);
        }
    }
    out.retain(|_, amounts| amounts.seen());
    Ok(out)
}

/// A bucket's sums as SQL gives them (a sum over no rows is NULL: read as 0).
#[derive(sqlx::FromRow)]
struct AmountsRow {
    gmv: Option<i64>,
    refunds: Option<i64>,
    fees: Option<i64>,
    charges: Option<i64>,
    refund_count: Option<i64>,
}

impl From<AmountsRow> for Amounts {
    fn from(row: AmountsRow) -> Self {
        Self {
            gmv: row.gmv.unwrap_or(0),
            refunds: row.refunds.unwrap_or(0),
            fees: row.fees.unwrap_or(0),
            charges: row.charges.unwrap_or(0),
            refund_count: row.refund_count.unwrap_or(0),
        }
    }
}

/// A rollup bucket: its day, currency, plugin and partner (`''` when not grouped by them).
#[derive(sqlx::FromRow)]
struct RollupBucketRow {
    start_day: i64,
    currency: String,
    plugin_id: String,
    publisher: String,
    #[sqlx(flatten)]
    amounts: AmountsRow,
}

/// A ledger bucket: the same as a rollup's, its day named `day`.
#[derive(sqlx::FromRow)]
struct LedgerBucketRow {
    day: i64,
    currency: String,
    plugin_id: String,
    publisher: String,
    #[sqlx(flatten)]
    amounts: AmountsRow,
}

/// Rollup rows of days (or months) `[from, to)`, summed in SQL to the grouping.
async fn rollups(
    market: &Market,
    grain: Grain,
    from: i64,
    to: i64,
    grouping: Grouping,
    publisher: Option<&str>,
) -> Result<Vec<(Bucket, Amounts)>, MarketError> {
    let plugin = if grouping.plugin { "plugin_id" } else { "''" };
    let partner = if grouping.publisher { "publisher" } else { "''" };
    let group: String = [("plugin_id", grouping.plugin), ("publisher", grouping.publisher)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(column, _)| format!(", {column}"))
        .collect();
    let rows = sqlx::query_as::<_, RollupBucketRow>(&format!(
        "SELECT start_day, currency, {plugin} AS plugin_id, {partner} AS publisher, \
         CAST(SUM(gross_minor) AS BIGINT) AS gmv, CAST(SUM(refunded_minor) AS BIGINT) AS refunds, \
         CAST(SUM(fees_minor - fees_returned_minor) AS BIGINT) AS fees, CAST(SUM(collections) AS BIGINT) AS charges, \
         CAST(SUM(refunds) AS BIGINT) AS refund_count FROM money_rollups \
         WHERE grain = $1 AND start_day >= $2 AND start_day < $3 AND (collections <> 0 OR refunds <> 0) \
         AND ($4 IS NULL OR publisher = $4) GROUP BY start_day, currency{group}"
    ))
    .bind(grain.as_str())
    .bind(from)
    .bind(to)
    .bind(publisher)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(((r.start_day * DAY_MS, stored_currency(&r.currency)?, r.plugin_id, r.publisher), r.amounts.into()))
        })
        .collect()
}

/// Collections and refunds posted in `[from, to)` ms, per day, currency, plugin and partner,
/// from the ledger (a part of a day at most).
async fn ledger(
    market: &Market,
    from: i64,
    to: i64,
    publisher: Option<&str>,
) -> Result<Vec<(Bucket, Amounts)>, MarketError> {
    let rows = sqlx::query_as::<_, LedgerBucketRow>(
        "SELECT t.posted_at / 86400000 AS day, c.currency, c.plugin_id, c.publisher, \
         CAST(SUM(CASE WHEN t.kind = 'collection' AND e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS BIGINT) AS gmv, \
         CAST(SUM(CASE WHEN t.kind = 'refund' AND e.account = 'platform:cash' THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS refunds, \
         CAST(SUM(CASE WHEN e.account = 'platform:fee-revenue' THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS fees, \
         CAST(SUM(CASE WHEN t.kind = 'collection' AND e.account = 'platform:cash' THEN 1 ELSE 0 END) AS BIGINT) AS charges, \
         CAST(SUM(CASE WHEN t.kind = 'refund' AND e.account = 'platform:cash' THEN 1 ELSE 0 END) AS BIGINT) AS refund_count \
         FROM ledger_transactions t JOIN charges c ON c.id = t.charge_id JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.kind IN ('collection', 'refund') AND t.posted_at >= $1 AND t.posted_at < $2 \
         AND ($3 IS NULL OR c.publisher = $3) \
         GROUP BY t.posted_at / 86400000, c.currency, c.plugin_id, c.publisher",
    )
    .bind(from)
    .bind(to)
    .bind(publisher)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter()
        .map(|r| Ok(((r.day * DAY_MS, stored_currency(&r.currency)?, r.plugin_id, r.publisher), r.amounts.into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z, day 20758.
    const NOV_1: i64 = 1_793_491_200_000;
    const NOV: i64 = NOV_1 / DAY_MS;
    const HOUR: i64 = 3_600_000;

    fn days(from: i64, to: i64) -> Piece {
        Piece::Rollup { grain: Grain::Day, from, to, sign: 1 }
    }

    #[test]
    fn whole_months_are_read_from_month_rows_and_the_rest_from_day_rows() {
        // 2026-10-20 to 2027-01-10: days of October, November and December whole, days of January.
        let (from, to) = (NOV - 12, NOV + 30 + 31 + 9);
        let read = pieces(from * DAY_MS, to * DAY_MS, true).unwrap();
        let month = Piece::Rollup { grain: Grain::Month, from: NOV, to: NOV + 61, sign: 1 };
        assert_eq!(read, [days(from, NOV), month, days(NOV + 61, to)]);
        assert_eq!(pieces(from * DAY_MS, to * DAY_MS, false).unwrap(), [days(from, to)]);
        let whole = pieces(NOV_1, (NOV + 30) * DAY_MS, true).unwrap();
        assert_eq!(whole, [Piece::Rollup { grain: Grain::Month, from: NOV, to: NOV + 30, sign: 1 }]);
    }

    #[test]
    fn edges_read_the_smaller_part_of_their_day_from_the_ledger() {
        // From 03:00 on Nov 1 (the day less its first 3 hours) to 05:00 on Nov 5 (the first 5 hours).
        let (from, to) = (NOV_1 + 3 * HOUR, NOV_1 + 4 * DAY_MS + 5 * HOUR);
        let read = pieces(from, to, false).unwrap();
        assert_eq!(
            read,
            [
                days(NOV, NOV + 1),
                Piece::Ledger { from: NOV_1, to: from, sign: -1 },
                Piece::Ledger { from: NOV_1 + 4 * DAY_MS, to, sign: 1 },
                days(NOV + 1, NOV + 4),
            ]
        );
        // Ending at 20:00 (now, say): the day's rollup less the ledger after 20:00.
        let evening = NOV_1 + 4 * DAY_MS + 20 * HOUR;
        let read = pieces(NOV_1, evening, false).unwrap();
        assert_eq!(
            read,
            [
                days(NOV + 4, NOV + 5),
                Piece::Ledger { from: evening, to: NOV_1 + 5 * DAY_MS, sign: -1 },
                days(NOV, NOV + 4)
            ]
        );
    }

    #[test]
    fn a_window_inside_one_day_reads_the_ledger_or_the_day_less_the_ledger() {
        let read = pieces(NOV_1 + HOUR, NOV_1 + 2 * HOUR, true).unwrap();
        assert_eq!(read, [Piece::Ledger { from: NOV_1 + HOUR, to: NOV_1 + 2 * HOUR, sign: 1 }]);
        let read = pieces(NOV_1, NOV_1 + 23 * HOUR, true).unwrap();
        assert_eq!(read, [days(NOV, NOV + 1), Piece::Ledger { from: NOV_1 + 23 * HOUR, to: NOV_1 + DAY_MS, sign: -1 }]);
    }
}
