//! Claiming attempts: the first transaction of a collection, before the provider is called.

use nexus_registry::Backend;
use nexus_registry::db::backend_of;
use nexus_registry::db::{placeholders, process_id, value_rows};

use super::{CHARGES_PER_TX, CLAIM_MS, Claim, attempt_key};
use crate::accounts::TenantId;
use crate::billing::charges::ChargeStatus;
use crate::billing::ids::ChargeId;
use crate::billing::provider::ProviderRequest;
use crate::error::MarketError;
use crate::market::Market;

/// Per charge: its claim, `None` (collected, not due, or held by another node), or an error.
pub(super) type Claimed = (ChargeId, Result<Option<Claim>, MarketError>);

/// Claims the next attempt (or the unresolved one) of each charge of `ids` due at `now`, in
/// one transaction under the charges' row locks (taken in id order). Per charge (in id
/// order): its claim, `None` (collected, not due, or held by another node), or an error.
pub(super) async fn claim_many(
    market: &Market,
    ids: &[ChargeId],
    now: i64,
    force: bool,
) -> Result<Vec<Claimed>, MarketError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut tx = market.db.write_tx().await?;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHARGES_PER_TX) {
        out.extend(lock_and_decide(&mut tx, market, chunk, now, force).await?);
    }
    let claimed: Vec<(&ChargeId, &Claim)> =
        out.iter().filter_map(|(id, claim)| claim.as_ref().ok().and_then(Option::as_ref).map(|c| (id, c))).collect();
    for chunk in claimed.chunks(CHARGES_PER_TX) {
        insert_started(&mut tx, chunk, now).await?;
        mark_collecting(&mut tx, chunk, now).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Locks the charges of `chunk` (in id order) and decides each one's claim, in `chunk`'s order.
async fn lock_and_decide(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    chunk: &[ChargeId],
    now: i64,
    force: bool,
) -> Result<Vec<Claimed>, MarketError> {
    let sql = backend_of(conn).positional(format!(
        "SELECT id, tenant_id, plugin_id, line, currency, amount_minor, status, attempts, next_attempt_at, \
         claimed_until, claimed_by FROM charges WHERE id IN ({}) ORDER BY id{}",
        placeholders(1, chunk.len()),
        market.db.for_update()
    ));
    let mut query = sqlx::query_as::<_, ClaimRow>(&sql);
    for id in chunk {
        query = query.bind(id.as_str());
    }
    let mut found = std::collections::HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        found.insert(row.id.clone(), row);
    }
    let mut out = Vec::with_capacity(chunk.len());
    for id in chunk {
        let claim = match found.get(id.as_str()) {
            Some(row) => decide(row, id, now, force, market.db.backend),
            None => Err(MarketError::NotFound(format!("charge {id}"))),
        };
        out.push((id.clone(), claim));
    }
    Ok(out)
}

/// Records the new attempts of `chunk` as started (the resolved ones exist already).
async fn insert_started(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(&ChargeId, &Claim)],
    now: i64,
) -> Result<(), MarketError> {
    let started: Vec<&(&ChargeId, &Claim)> = chunk.iter().filter(|(_, claim)| !claim.resolve).collect();
    if started.is_empty() {
        return Ok(());
    }
    let sql = backend_of(conn).positional(format!(
        "INSERT INTO payment_attempts (charge_id, attempt, idempotency_key, status, started_at) VALUES {}",
        value_rows(started.len(), 5)
    ));
    let mut insert = sqlx::query(&sql);
    for (id, claim) in started {
        insert = insert.bind(id.as_str()).bind(claim.attempt).bind(&claim.key).bind("started").bind(now);
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// Marks the charges of `chunk` collecting under their claimed attempt, held by this process.
async fn mark_collecting(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(&ChargeId, &Claim)],
    now: i64,
) -> Result<(), MarketError> {
    let sql = backend_of(conn).positional(format!(
        "WITH v (id, attempts, claimed_until, claimed_by) AS (VALUES {}) UPDATE charges SET \
         status = 'collecting', attempts = v.attempts, claimed_until = v.claimed_until, \
         claimed_by = v.claimed_by FROM v WHERE charges.id = v.id",
        value_rows(chunk.len(), 4)
    ));
    let mut update = sqlx::query(&sql);
    for (id, claim) in chunk {
        update = update.bind(id.as_str()).bind(claim.attempt).bind(now + CLAIM_MS).bind(process_id());
    }
    update.execute(&mut *conn).await?;
    Ok(())
}

/// A charge row read under its lock, as [`decide`] needs it.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    tenant_id: TenantId,
    plugin_id: String,
    line: String,
    currency: String,
    amount_minor: i64,
    status: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    claimed_until: Option<i64>,
    claimed_by: Option<String>,
}

/// The claim a locked charge row allows at `now`, if any.
fn decide(
    row: &ClaimRow,
    id: &ChargeId,
    now: i64,
    force: bool,
    backend: Backend,
) -> Result<Option<Claim>, MarketError> {
    let status = ChargeStatus::stored(&row.status)?;
    // A claim is held until it expires while its process may still be calling the provider:
    // this process, or, on PostgreSQL, any node. On SQLite one server writes the file, so a
    // claim of another process is one whose process was killed: resolved at once.
    let held = row.claimed_until.unwrap_or(0) > now
        && (backend == Backend::Postgres || row.claimed_by.as_deref().is_none_or(|by| by == process_id()));
    let currency = crate::billing::ledger::stored_currency(&row.currency)?;
    // Every field the provider is sent is read or the claim fails: a read error must never
    // become an amount of 0 or an empty party in a request that moves money.
    let (party, amount_minor) = (&row.tenant_id, row.amount_minor);
    let description = format!("{} {}", row.plugin_id, row.line);
    let request = |key: &str| ProviderRequest {
        key: key.to_string(),
        party: party.to_string(),
        amount_minor,
        currency,
        description: description.clone(),
    };
    Ok(match status {
        ChargeStatus::Collecting if held => None,
        ChargeStatus::Collecting => {
            let key = attempt_key(id, row.attempts);
            Some(Claim { request: request(&key), key, attempt: row.attempts, resolve: true })
        }
        ChargeStatus::Pending | ChargeStatus::Failed if force || row.next_attempt_at.is_some_and(|at| at <= now) => {
            let attempt = row.attempts + 1;
            let key = attempt_key(id, attempt);
            Some(Claim { request: request(&key), key, attempt, resolve: false })
        }
        _ => None,
    })
}
