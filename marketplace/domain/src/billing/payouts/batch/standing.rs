//! What a batch's partners have in the database, read under their payable locks.

use std::collections::{BTreeMap, BTreeSet};

use nexus_registry::db::{backend_of, value_rows};
use sqlx::Row;

use super::Due;
use crate::error::MarketError;

/// What the batch's partners have in the database, read under their locks.
pub(super) struct Standing {
    /// Already paid (or being paid) in this period.
    pub(super) done: BTreeSet<(String, String)>,
    pub(super) balance: BTreeMap<(String, String), i64>,
    /// The last ledger sequence settled by a payout that was not returned.
    pub(super) after: BTreeMap<(String, String), i64>,
    /// Since then: what the partner's payable moved, and the last sequence that moved it.
    pub(super) since: BTreeMap<(String, String), (i64, i64)>,
}

/// The partners' `IN (…)` list from `$first`.
fn partners_in(first: usize, due: &[Due]) -> String {
    (first..first + due.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A row's partner and currency.
fn key(row: &sqlx::any::AnyRow) -> Result<(String, String), MarketError> {
    Ok((row.try_get("publisher")?, row.try_get("currency")?))
}

/// The [`Standing`] of the partners of `due` in `period`, in four reads.
pub(super) async fn standing(
    conn: &mut sqlx::AnyConnection,
    due: &[Due],
    period: &str,
) -> Result<Standing, MarketError> {
    let done = done(conn, due, period).await?;
    let balance = balances(conn, due).await?;
    let after = settled_through(conn, due).await?;
    let since = moved_since(conn, due, &after).await?;
    Ok(Standing { done, balance, after, since })
}

/// The partners and currencies of `due` with a payout in `period` already.
async fn done(
    conn: &mut sqlx::AnyConnection,
    due: &[Due],
    period: &str,
) -> Result<BTreeSet<(String, String)>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "SELECT publisher, currency FROM payouts WHERE period_key = $1 AND publisher IN ({})",
        partners_in(2, due)
    ));
    let mut query = sqlx::query(&sql).bind(period);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    query.fetch_all(&mut *conn).await?.iter().map(key).collect::<Result<_, _>>()
}

/// The payable balance of each partner and currency of `due`.
async fn balances(conn: &mut sqlx::AnyConnection, due: &[Due]) -> Result<BTreeMap<(String, String), i64>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "SELECT publisher, currency, payable_minor FROM partner_balances WHERE publisher IN ({})",
        partners_in(1, due)
    ));
    let mut query = sqlx::query(&sql);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    let mut balance = BTreeMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        balance.insert(key(&row)?, row.try_get::<i64, _>("payable_minor")?);
    }
    Ok(balance)
}

/// The last ledger sequence settled by a payout that was not returned, per partner and currency.
async fn settled_through(
    conn: &mut sqlx::AnyConnection,
    due: &[Due],
) -> Result<BTreeMap<(String, String), i64>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "SELECT publisher, currency, MAX(settles_through_seq) AS after FROM payouts \
         WHERE status <> 'failed' AND publisher IN ({}) GROUP BY publisher, currency",
        partners_in(1, due)
    ));
    let mut query = sqlx::query(&sql);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    let mut after = BTreeMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        after.insert(key(&row)?, row.try_get::<Option<i64>, _>("after")?.unwrap_or(0));
    }
    Ok(after)
}

/// What moved each payable after its last settled sequence (`after`), and the last sequence
/// that moved it: a range of the statement index per partner, not its history.
async fn moved_since(
    conn: &mut sqlx::AnyConnection,
    due: &[Due],
    after: &BTreeMap<(String, String), i64>,
) -> Result<BTreeMap<(String, String), (i64, i64)>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "WITH a (publisher, currency, settled) AS (VALUES {}) \
         SELECT a.publisher, a.currency, CAST(SUM(x.amount_minor) AS BIGINT) AS moved, MAX(x.seq) AS through \
         FROM a JOIN partner_entries x ON x.publisher = a.publisher AND x.currency = a.currency AND x.seq > a.settled \
         GROUP BY a.publisher, a.currency",
        value_rows(due.len(), 3)
    ));
    let mut query = sqlx::query(&sql);
    for (publisher, currency) in due {
        let seq = after.get(&(publisher.clone(), currency.code().to_string())).copied().unwrap_or(0);
        query = query.bind(publisher.as_str()).bind(currency.code()).bind(seq);
    }
    let mut since = BTreeMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let moved = row.try_get::<Option<i64>, _>("moved")?.unwrap_or(0);
        since.insert(key(&row)?, (moved, row.try_get::<i64, _>("through")?));
    }
    Ok(since)
}
