//! What a batch's partners have in the database, read under their payable locks.

use std::collections::{BTreeMap, BTreeSet};

use nexus_registry::db::{backend_of, value_rows};

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
    let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(period);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    Ok(query.fetch_all(&mut *conn).await?.into_iter().collect())
}

/// The payable balance of each partner and currency of `due`.
async fn balances(conn: &mut sqlx::AnyConnection, due: &[Due]) -> Result<BTreeMap<(String, String), i64>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "SELECT publisher, currency, payable_minor FROM partner_balances WHERE publisher IN ({})",
        partners_in(1, due)
    ));
    let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(publisher, currency, payable)| ((publisher, currency), payable)).collect())
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
    // `settles_through_seq` is NOT NULL and each group has a row: a NULL here is an error.
    let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(publisher, currency, after)| ((publisher, currency), after)).collect())
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
    // An inner join: each group has an entry, whose `amount_minor` is NOT NULL, so `moved`
    // is never NULL; a NULL is an error, not a payable that did not move.
    let mut query = sqlx::query_as::<_, (String, String, i64, i64)>(&sql);
    for (publisher, currency) in due {
        let seq = after.get(&(publisher.clone(), currency.code().to_string())).copied().unwrap_or(0);
        query = query.bind(publisher.as_str()).bind(currency.code()).bind(seq);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|(publisher, currency, moved, through)| ((publisher, currency), (moved, through)))
        .collect())
}
