//! Collection: each attempt to collect a charge gets its own idempotency key at the
//! [`PaymentProvider`] (`<charge>:<attempt>`), claimed in the database before the provider
//! is called, so only one node ever calls for an attempt. The outcome is recorded after:
//!
//! - *succeeded*: the charge is split under the revenue-share policy and the collection is
//!   posted to the ledger, in one transaction with the charge's new status;
//! - *declined*: the attempt stays declined (a retry is a new attempt under a new key, so a
//!   failed attempt never turns into a success); the next is scheduled, and once all are
//!   used the install is paused with `payment_failed` until its tenant settles;
//! - *unknown* (the call timed out, or the node died during it): the charge stays
//!   `collecting` and is resolved later by asking the provider about the same key, never by
//!   collecting again.

use nexus_money::Currency;
use nexus_registry::Backend;
use nexus_registry::db::backend_of;
use nexus_registry::db::{placeholders, process_id};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::charges::ChargeStatus;
use super::ids::ChargeId;
use super::ledger::{self, Head, Kind};
use super::provider::{Outcome, ProviderError, ProviderRequest};
use super::share;
use crate::error::{MarketError, storage};
use crate::market::Market;

/// How long a node may hold an attempt it claimed before another node takes the outcome
/// as unknown and asks the provider.
pub const CLAIM_MS: i64 = 60_000;

/// The reason a paused install shows once its payment retries are used up.
pub const PAYMENT_FAILED: &str = "payment_failed";

/// What one collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Collected {
    Succeeded,
    Declined,
    /// The outcome is not known yet; resolved by a later run.
    Unknown,
    /// Nothing to do: collected, not due, or another node holds it.
    Skipped,
}

/// Charges claimed, then concluded, per write transaction (and read per page by a run).
pub const CHARGES_PER_TX: usize = 250;

/// Provider calls of one batch in flight at once: a network provider answers many calls in
/// the time of one; each call has its own key, so their order does not matter.
const CALLS_IN_FLIGHT: usize = 16;

struct Claim {
    key: String,
    attempt: i64,
    request: ProviderRequest,
    /// An attempt whose outcome is unknown: ask, do not collect.
    resolve: bool,
}

/// What the provider said about a claimed attempt.
enum Answer {
    Said(Outcome),
    /// Asked about an attempt whose outcome was unknown: it never carried it out.
    NeverCarriedOut,
    /// No answer: the outcome is unknown.
    Failed(ProviderError),
}

/// What one collection did, or why it could not.
type Collection = Result<Collected, MarketError>;

/// Collects one charge if it is due at `now` (`force`: due now whatever its schedule, as
/// when a tenant settles).
pub async fn collect(market: &Market, id: &ChargeId, now: i64, force: bool) -> Collection {
    let mut outcomes = collect_many(market, std::slice::from_ref(id), now, force).await;
    outcomes.pop().map_or(Ok(Collected::Skipped), |(_, outcome)| outcome)
}

/// Collects the charges of `ids` that are due at `now`: their attempts claimed in one write
/// transaction, the provider asked about each outside any transaction, the answers recorded
/// in one write transaction. A batch transaction that fails is done again charge by charge,
/// so that one charge's problem never stops the others'; a crash between the steps leaves
/// attempts claimed, for a later run to ask the provider about. An unresolved attempt the
/// provider never carried out (its process died before the call) is abandoned and the
/// charge collected under a new attempt in the same call.
pub async fn collect_many(market: &Market, ids: &[ChargeId], now: i64, force: bool) -> Vec<(ChargeId, Collection)> {
    let (mut out, abandoned) = collect_round(market, ids, now, force).await;
    if abandoned.is_empty() {
        return out;
    }
    let mut again: std::collections::HashMap<ChargeId, Collection> =
        collect_round(market, &abandoned, now, force).await.0.into_iter().collect();
    for (id, collection) in &mut out {
        if let Some(second) = again.remove(id) {
            *collection = second;
        }
    }
    out
}

/// One round of [`collect_many`]; also the charges whose attempt was abandoned.
async fn collect_round(
    market: &Market,
    ids: &[ChargeId],
    now: i64,
    force: bool,
) -> (Vec<(ChargeId, Collection)>, Vec<ChargeId>) {
    if ids.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let claims = match claim_many(market, ids, now, force).await {
        Ok(claims) => claims,
        Err(error) if ids.len() > 1 => {
            tracing::warn!(%error, charges = ids.len(), "claiming a batch of charges failed; claiming them one by one");
            let mut claims = Vec::with_capacity(ids.len());
            for id in ids {
                match claim_many(market, std::slice::from_ref(id), now, force).await {
                    Ok(claim) => claims.extend(claim),
                    Err(error) => claims.push((id.clone(), Err(error))),
                }
            }
            claims
        }
        Err(error) => return (ids.first().map(|id| (id.clone(), Err(error))).into_iter().collect(), Vec::new()),
    };
    let mut out = Vec::with_capacity(claims.len());
    let mut claimed = Vec::new();
    for (id, claim) in claims {
        match claim {
            Ok(Some(claim)) => claimed.push((id, claim)),
            Ok(None) => out.push((id, Ok(Collected::Skipped))),
            Err(error) => out.push((id, Err(error))),
        }
    }
    crate::pause::at("collect.after_claim").await;
    let mut answers: Vec<Answer> = Vec::with_capacity(claimed.len());
    for calls in claimed.chunks(CALLS_IN_FLIGHT) {
        let asked: Vec<_> = calls.iter().map(|(_, claim)| ask(market, claim)).collect();
        answers.extend(futures_util::future::join_all(asked).await);
    }
    let answered: Vec<(&ChargeId, &Claim, &Answer)> =
        claimed.iter().zip(&answers).map(|((id, claim), answer)| (id, claim, answer)).collect();
    match conclude(market, &answered, now).await {
        Ok(concluded) => out.extend(concluded.into_iter().map(|(id, collected)| (id, Ok(collected)))),
        Err(error) if answered.len() > 1 => {
            tracing::warn!(%error, charges = answered.len(), "recording a batch of collections failed; one by one");
            for one in &answered {
                match conclude(market, std::slice::from_ref(one), now).await {
                    Ok(concluded) => out.extend(concluded.into_iter().map(|(id, collected)| (id, Ok(collected)))),
                    Err(error) => out.push((one.0.clone(), Err(error))),
                }
            }
        }
        Err(error) => out.extend(answered.first().map(|(id, _, _)| ((*id).clone(), Err(error)))),
    }
    let abandoned = answered
        .iter()
        .filter(|(_, _, answer)| matches!(answer, Answer::NeverCarriedOut))
        .map(|(id, _, _)| (*id).clone())
        .collect();
    (out, abandoned)
}

/// The provider's answer about a claimed attempt: collects, or (`resolve`) says what became
/// of the attempt whose outcome was unknown, never collecting again.
async fn ask(market: &Market, claim: &Claim) -> Answer {
    let provider = &market.billing.payments;
    if claim.resolve {
        match provider.collection(&claim.key).await {
            Ok(Some(outcome)) => Answer::Said(outcome),
            Ok(None) => Answer::NeverCarriedOut,
            Err(error) => Answer::Failed(error),
        }
    } else {
        match provider.collect(&claim.request).await {
            Ok(outcome) => Answer::Said(outcome),
            Err(error) => Answer::Failed(error),
        }
    }
}

/// `IN ($first, …)` for `n` values.
/// `($1, …), (…)`: `count` rows of `width` values.
fn rows(count: usize, width: usize) -> String {
    (0..count).map(|row| format!("({})", placeholders(row * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// Claims the next attempt (or the unresolved one) of each charge of `ids` due at `now`, in
/// one transaction under the charges' row locks (taken in id order). Per charge (in id
/// order): its claim, `None` (collected, not due, or held by another node), or an error.
async fn claim_many(
    market: &Market,
    ids: &[ChargeId],
    now: i64,
    force: bool,
) -> Result<Vec<(ChargeId, Result<Option<Claim>, MarketError>)>, MarketError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut tx = market.db.write_tx().await?;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHARGES_PER_TX) {
        let sql = backend_of(&tx).positional(format!(
            "SELECT id, tenant_id, plugin_id, line, currency, amount_minor, status, attempts, next_attempt_at, \
             claimed_until, claimed_by FROM charges WHERE id IN ({}) ORDER BY id{}",
            placeholders(1, chunk.len()),
            market.db.for_update()
        ));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        let mut found = std::collections::HashMap::new();
        for row in query.fetch_all(&mut *tx).await? {
            found.insert(row.try_get::<String, _>("id")?, row);
        }
        for id in chunk {
            let claim = match found.get(id.as_str()) {
                Some(row) => decide(row, id, now, force, market.db.backend),
                None => Err(MarketError::NotFound(format!("charge {id}"))),
            };
            out.push((id.clone(), claim));
        }
    }
    let claimed: Vec<(&ChargeId, &Claim)> =
        out.iter().filter_map(|(id, claim)| claim.as_ref().ok().and_then(Option::as_ref).map(|c| (id, c))).collect();
    for chunk in claimed.chunks(CHARGES_PER_TX) {
        let started: Vec<&(&ChargeId, &Claim)> = chunk.iter().filter(|(_, claim)| !claim.resolve).collect();
        if !started.is_empty() {
            let sql = backend_of(&tx).positional(format!(
                "INSERT INTO payment_attempts (charge_id, attempt, idempotency_key, status, started_at) VALUES {}",
                rows(started.len(), 5)
            ));
            let mut insert = sqlx::query(&sql);
            for (id, claim) in started {
                insert = insert.bind(id.as_str()).bind(claim.attempt).bind(&claim.key).bind("started").bind(now);
            }
            insert.execute(&mut *tx).await?;
        }
        let sql = backend_of(&tx).positional(format!(
            "WITH v (id, attempts, claimed_until, claimed_by) AS (VALUES {}) UPDATE charges SET \
             status = 'collecting', attempts = v.attempts, claimed_until = v.claimed_until, \
             claimed_by = v.claimed_by FROM v WHERE charges.id = v.id",
            rows(chunk.len(), 4)
        ));
        let mut update = sqlx::query(&sql);
        for (id, claim) in chunk {
            update = update.bind(id.as_str()).bind(claim.attempt).bind(now + CLAIM_MS).bind(process_id());
        }
        update.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// The claim a locked charge row allows at `now`, if any.
fn decide(row: &AnyRow, id: &ChargeId, now: i64, force: bool, backend: Backend) -> Result<Option<Claim>, MarketError> {
    let status = charge_status(row)?;
    let attempts: i64 = row.try_get("attempts")?;
    let next_attempt_at: Option<i64> = row.try_get("next_attempt_at")?;
    let claimed_until: Option<i64> = row.try_get("claimed_until")?;
    let claimed_by: Option<String> = row.try_get("claimed_by")?;
    // A claim is held until it expires while its process may still be calling the provider:
    // this process, or, on PostgreSQL, any node. On SQLite one server writes the file, so a
    // claim of another process is one whose process was killed: resolved at once.
    let held = claimed_until.unwrap_or(0) > now
        && (backend == Backend::Postgres || claimed_by.as_deref().is_none_or(|by| by == process_id()));
    let currency = Currency::from_code(&row.try_get::<String, _>("currency")?).map_err(super::money_error)?;
    // Every field the provider is sent is read or the claim fails: a read error must never
    // become an amount of 0 or an empty party in a request that moves money.
    let (party, amount_minor): (String, i64) = (row.try_get("tenant_id")?, row.try_get("amount_minor")?);
    let description = format!("{} {}", row.try_get::<String, _>("plugin_id")?, row.try_get::<String, _>("line")?);
    let request = |key: &str| ProviderRequest {
        key: key.to_string(),
        party: party.clone(),
        amount_minor,
        currency,
        description: description.clone(),
    };
    Ok(match status {
        ChargeStatus::Collecting if held => None,
        ChargeStatus::Collecting => {
            let key = attempt_key(id, attempts);
            Some(Claim { request: request(&key), key, attempt: attempts, resolve: true })
        }
        ChargeStatus::Pending | ChargeStatus::Failed if force || next_attempt_at.is_some_and(|at| at <= now) => {
            let attempt = attempts + 1;
            let key = attempt_key(id, attempt);
            Some(Claim { request: request(&key), key, attempt, resolve: false })
        }
        _ => None,
    })
}

/// The `status` column of a charge row.
pub(crate) fn charge_status(row: &sqlx::any::AnyRow) -> Result<ChargeStatus, MarketError> {
    row.try_get::<String, _>("status")?.parse().map_err(|_| storage("stored charge status"))
}

fn attempt_key(id: &ChargeId, attempt: i64) -> String {
    format!("{id}:{attempt}")
}

/// A charge being concluded, read under its row lock.
struct Locked {
    install: String,
    tenant: String,
    plugin: String,
    publisher: String,
    plan_key: String,
    currency: Currency,
    amount: i64,
    /// Still collecting under this attempt: only the claimed attempt may conclude it.
    attempt: Option<i64>,
}

/// Records the provider's answers in one write transaction, under the charges' row locks
/// (taken in id order), then the partners' (in one order): successes split and posted
/// together ([`record_successes`]), declines scheduled or pausing their install, unknown
/// outcomes left for a later run. Per charge, what it did.
async fn conclude(
    market: &Market,
    answered: &[(&ChargeId, &Claim, &Answer)],
    now: i64,
) -> Result<Vec<(ChargeId, Collected)>, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let mut ids: Vec<&str> = answered.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked = std::collections::HashMap::new();
    for chunk in ids.chunks(CHARGES_PER_TX) {
        let sql = backend_of(&tx).positional(format!(
            "SELECT c.id, c.install_id, c.tenant_id, c.plugin_id, c.publisher, c.currency, c.amount_minor, c.status, \
             c.attempts, p.plan_key FROM charges c JOIN plans p ON p.id = c.plan_id WHERE c.id IN ({}) ORDER BY c.id{}",
            placeholders(1, chunk.len()),
            market.db.for_update_of("c")
        ));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            let collecting = charge_status(&row)? == ChargeStatus::Collecting;
            let charge = Locked {
                install: row.try_get("install_id")?,
                tenant: row.try_get("tenant_id")?,
                plugin: row.try_get("plugin_id")?,
                publisher: row.try_get("publisher")?,
                plan_key: row.try_get("plan_key")?,
                currency: Currency::from_code(&row.try_get::<String, _>("currency")?).map_err(super::money_error)?,
                amount: row.try_get("amount_minor")?,
                attempt: if collecting { Some(row.try_get("attempts")?) } else { None },
            };
            locked.insert(row.try_get::<String, _>("id")?, charge);
        }
    }
    let concludes =
        |id: &ChargeId, claim: &Claim| locked.get(id.as_str()).filter(|charge| charge.attempt == Some(claim.attempt));
    let mut out = Vec::with_capacity(answered.len());
    let mut successes = Vec::new();
    for (id, claim, answer) in answered {
        if let (Answer::Said(Outcome::Succeeded { reference }), Some(charge)) = (answer, concludes(id, claim)) {
            successes.push((*id, *claim, reference.as_str(), charge));
        }
    }
    record_successes(&mut tx, market, &successes, now).await?;
    for (id, claim, answer) in answered {
        let collected = match answer {
            Answer::Said(outcome) => match (outcome, concludes(id, claim)) {
                (Outcome::Succeeded { .. }, Some(_)) => Collected::Succeeded,
                (Outcome::Refused { reason }, Some(charge)) => {
                    declined(&mut tx, market, id, claim, &charge.install, reason, now).await?;
                    Collected::Declined
                }
                (_, None) => Collected::Skipped,
            },
            Answer::NeverCarriedOut => {
                abandon(&mut tx, id, claim, now).await?;
                Collected::Unknown
            }
            Answer::Failed(error) => {
                unknown(&mut tx, id, claim, error, now).await?;
                Collected::Unknown
            }
        };
        out.push(((*id).clone(), collected));
    }
    tx.commit().await?;
    for (_, collected) in &out {
        match collected {
            Collected::Succeeded => market.runner.metrics.record_collection("succeeded"),
            Collected::Declined => market.runner.metrics.record_collection("declined"),
            _ => {}
        }
    }
    for (_, _, answer) in answered {
        if matches!(answer, Answer::Failed(_)) {
            market.runner.metrics.record_collection("unknown");
        }
    }
    Ok(out)
}

/// No answer: the attempt's outcome is unknown, to be asked for by the next run, on any node.
async fn unknown(
    conn: &mut sqlx::AnyConnection,
    id: &ChargeId,
    claim: &Claim,
    error: &ProviderError,
    now: i64,
) -> Result<(), MarketError> {
    sqlx::query("UPDATE payment_attempts SET status = 'unknown', message = $3 WHERE charge_id = $1 AND attempt = $2")
        .bind(id.as_str())
        .bind(claim.attempt)
        .bind(error.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE charges SET claimed_until = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The provider never carried the attempt out: it ends `abandoned` and the charge is due
/// again at once (a new attempt under a new key).
async fn abandon(conn: &mut sqlx::AnyConnection, id: &ChargeId, claim: &Claim, now: i64) -> Result<(), MarketError> {
    finish_attempt(conn, id, claim.attempt, "abandoned", None, Some("the provider has no record of it"), now).await?;
    sqlx::query(
        "UPDATE charges SET status = 'pending', next_attempt_at = $2, claimed_until = NULL \
         WHERE id = $1 AND status = 'collecting' AND attempts = $3",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(claim.attempt)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn finish_attempt(
    conn: &mut sqlx::AnyConnection,
    id: &ChargeId,
    attempt: i64,
    status: &str,
    reference: Option<&str>,
    message: Option<&str>,
    now: i64,
) -> Result<(), MarketError> {
    sqlx::query(
        "UPDATE payment_attempts SET status = $3, provider_reference = $4, message = $5, finished_at = $6 \
         WHERE charge_id = $1 AND attempt = $2",
    )
    .bind(id.as_str())
    .bind(attempt)
    .bind(status)
    .bind(reference)
    .bind(message.map(|m| nexus_host::limits::clip(m, 500)))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A collected charge to record: its id, the attempt, the provider's reference, the charge.
type Success<'a> = (&'a ChargeId, &'a Claim, &'a str, &'a Locked);

/// Records successes: each split under the policy in force at the partner's lifetime
/// position (the partners' rows locked in one order, the charges split in id order, each
/// moving its partner's position for the next), the collection postings, the charges'
/// new status, the partners' new positions, the attempts; resumes installs paused for
/// payment once nothing failed remains. A few statements whatever their number.
async fn record_successes(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    successes: &[Success<'_>],
    now: i64,
) -> Result<(), MarketError> {
    if successes.is_empty() {
        return Ok(());
    }
    let partners: Vec<(String, Currency)> =
        successes.iter().map(|(_, _, _, charge)| (charge.publisher.clone(), charge.currency)).collect();
    share::lock_lifetimes(conn, market.db.backend, &partners).await?;
    let mut lifetimes = lifetimes(conn, &partners).await?;
    let mut policies = std::collections::HashMap::new();
    let mut postings = Vec::with_capacity(successes.len());
    let mut fees = Vec::with_capacity(successes.len());
    for (id, _, reference, charge) in successes {
        let scope = (charge.publisher.as_str(), charge.plugin.as_str(), charge.plan_key.as_str());
        if let std::collections::hash_map::Entry::Vacant(slot) = policies.entry(scope) {
            slot.insert(share::in_force(conn, scope.0, scope.1, scope.2, now).await?);
        }
        let (tiers, policy_id) = &policies[&scope];
        let lifetime = lifetimes.entry((charge.publisher.clone(), charge.currency.code().to_string())).or_default();
        let split =
            share::policy_in(tiers, charge.currency)?.split(*lifetime, charge.amount).map_err(super::money_error)?;
        *lifetime += charge.amount;
        let posting = nexus_money::ledger::collected_charge(split, charge.currency, &charge.tenant, &charge.publisher)
            .map_err(super::money_error)?;
        let memo = format!(
            "collected {reference}; fee {} under {}",
            split.fee,
            policy_id.as_deref().unwrap_or("the default policy")
        );
        postings.push((*id, memo, posting));
        fees.push(split.fee);
    }
    let heads: Vec<_> = postings
        .iter()
        .map(|(id, memo, posting)| (Head::of_charge(Kind::Collection, id, memo.clone(), now), posting))
        .collect();
    ledger::post_many(conn, &heads).await?;
    let collected: Vec<(&Success, i64)> = successes.iter().zip(fees).collect();
    for chunk in collected.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "WITH v (id, fee_minor) AS (VALUES {}) UPDATE charges SET status = 'collected', fee_minor = v.fee_minor, \
             collected_at = ${n}, claimed_until = NULL, next_attempt_at = NULL FROM v WHERE charges.id = v.id",
            rows(chunk.len(), 2),
            n = chunk.len() * 2 + 1
        ));
        let mut update = sqlx::query(&sql);
        for ((id, _, _, _), fee) in chunk {
            update = update.bind(id.as_str()).bind(*fee);
        }
        update.bind(now).execute(&mut *conn).await?;
        let sql = backend_of(conn).positional(format!(
            "WITH v (charge_id, attempt, reference) AS (VALUES {}) UPDATE payment_attempts SET status = 'succeeded', \
             provider_reference = v.reference, message = NULL, finished_at = ${n} FROM v \
             WHERE payment_attempts.charge_id = v.charge_id AND payment_attempts.attempt = v.attempt",
            rows(chunk.len(), 3),
            n = chunk.len() * 3 + 1
        ));
        let mut update = sqlx::query(&sql);
        for ((id, claim, reference, _), _) in chunk {
            update = update.bind(id.as_str()).bind(claim.attempt).bind(*reference);
        }
        update.bind(now).execute(&mut *conn).await?;
    }
    let mut gross: std::collections::BTreeMap<(&str, &str), i64> = std::collections::BTreeMap::new();
    for (_, _, _, charge) in successes {
        *gross.entry((charge.publisher.as_str(), charge.currency.code())).or_default() += charge.amount;
    }
    let gross: Vec<_> = gross.into_iter().collect();
    for chunk in gross.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "WITH v (publisher, currency, amount) AS (VALUES {}) UPDATE partner_totals \
             SET lifetime_gross_minor = partner_totals.lifetime_gross_minor + v.amount FROM v \
             WHERE partner_totals.publisher = v.publisher AND partner_totals.currency = v.currency",
            rows(chunk.len(), 3)
        ));
        let mut update = sqlx::query(&sql);
        for ((publisher, currency), amount) in chunk {
            update = update.bind(*publisher).bind(*currency).bind(*amount);
        }
        update.execute(&mut *conn).await?;
    }
    resume_paid(conn, successes, now).await
}

/// The lifetime gross of each partner and currency of `partners` (locked by the caller).
async fn lifetimes(
    conn: &mut sqlx::AnyConnection,
    partners: &[(String, Currency)],
) -> Result<std::collections::HashMap<(String, String), i64>, MarketError> {
    let mut keys: Vec<(&str, &str)> = partners.iter().map(|(p, c)| (p.as_str(), c.code())).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "WITH v (publisher, currency) AS (VALUES {}) SELECT t.publisher, t.currency, t.lifetime_gross_minor \
             FROM partner_totals t JOIN v ON t.publisher = v.publisher AND t.currency = v.currency",
            rows(chunk.len(), 2)
        ));
        let mut query = sqlx::query(&sql);
        for (publisher, currency) in chunk {
            query = query.bind(*publisher).bind(*currency);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let key = (row.try_get("publisher")?, row.try_get("currency")?);
            out.insert(key, row.try_get::<i64, _>("lifetime_gross_minor")?);
        }
    }
    Ok(out)
}

/// Resumes the installs of `successes` that wait for payment once nothing failed remains:
/// one read finds those waiting, each is then resumed as a single collection would.
async fn resume_paid(conn: &mut sqlx::AnyConnection, successes: &[Success<'_>], now: i64) -> Result<(), MarketError> {
    let mut installs: Vec<&str> = successes.iter().map(|(_, _, _, charge)| charge.install.as_str()).collect();
    installs.sort_unstable();
    installs.dedup();
    for chunk in installs.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "SELECT id FROM installs WHERE id IN ({}) AND status IN ('pending_payment', 'paused') ORDER BY id",
            placeholders(1, chunk.len())
        ));
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for install in chunk {
            query = query.bind(*install);
        }
        for install in query.fetch_all(&mut *conn).await? {
            crate::installs::lifecycle::run_if_paid(conn, &install, now).await?;
        }
    }
    Ok(())
}

/// Records a decline: the next attempt scheduled, or once all are used the install paused
/// with `payment_failed` until its tenant settles.
async fn declined(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    id: &ChargeId,
    claim: &Claim,
    install: &str,
    reason: &str,
    now: i64,
) -> Result<(), MarketError> {
    let schedule = &market.billing.retry_after_ms;
    let next = usize::try_from(claim.attempt - 1).ok().and_then(|i| schedule.get(i)).map(|wait| now + wait);
    finish_attempt(conn, id, claim.attempt, "declined", None, Some(reason), now).await?;
    crate::webhooks::payment_failed(conn, now, install, id.as_str(), claim.attempt, reason, next).await?;
    mail_decline(conn, id, install, reason, next, now).await?;
    sqlx::query("UPDATE charges SET status = 'failed', next_attempt_at = $2, claimed_until = NULL WHERE id = $1")
        .bind(id.as_str())
        .bind(next)
        .execute(&mut *conn)
        .await?;
    if next.is_none() {
        let why = format!(
            "{PAYMENT_FAILED}: charge {id} was declined {} times ({})",
            claim.attempt,
            nexus_host::limits::clip(reason, 200)
        );
        if crate::installs::lifecycle::pause_for_payment(conn, install, &why, now).await? {
            let detail = serde_json::json!({ "charge": id.as_str(), "attempts": claim.attempt, "reason": reason });
            crate::audit::record(&mut *conn, "system:billing", "install.paused_for_payment", install, detail).await?;
        }
    }
    Ok(())
}

/// Mails the tenant's owners, admins and finance members about a declined payment.
async fn mail_decline(
    conn: &mut sqlx::AnyConnection,
    id: &ChargeId,
    install: &str,
    reason: &str,
    next: Option<i64>,
    now: i64,
) -> Result<(), MarketError> {
    let row = sqlx::query(
        "SELECT i.tenant_id, i.plugin_id, c.amount_minor, c.currency FROM charges c JOIN installs i ON i.id = c.install_id \
         WHERE c.id = $1",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let tenant: String = row.try_get("tenant_id")?;
    let plugin: String = row.try_get("plugin_id")?;
    let currency: String = row.try_get("currency")?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let amount = nexus_money::Currency::from_code(&currency)
        .map(|c| nexus_money::Money::new(amount_minor, c).to_string())
        .unwrap_or_else(|_| currency.clone());
    let then = match next {
        Some(at) => format!("We try again at {} (UTC).", nexus_money::period::day_label(at)),
        None => format!("That was the last attempt: {plugin} is paused until the charge is settled."),
    };
    let notice = crate::mail::Mail {
        kind: "payment-failed",
        to: String::new(),
        subject: format!("A payment of {amount} for {plugin} was declined"),
        body: format!(
            "Hello,\n\nThe payment of {amount} for {plugin} (install {install}, charge {id}) was declined: {reason}.\n\
             {then}\n\nSettle it in the console's bills, or with `nexus settle {install}`.\n"
        ),
    };
    crate::mail::to_members(conn, now, "tenant", &tenant, &crate::mail::MONEY_ROLES, &notice).await?;
    Ok(())
}

/// One attempt as the tenant and operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub status: String,
    pub provider_reference: Option<String>,
    pub message: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn attempts(market: &Market, id: &ChargeId) -> Result<Vec<Attempt>, MarketError> {
    let rows = sqlx::query(
        "SELECT attempt, status, provider_reference, message, started_at, finished_at FROM payment_attempts \
         WHERE charge_id = $1 ORDER BY attempt",
    )
    .bind(id.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                attempt: r.try_get("attempt")?,
                status: r.try_get("status")?,
                provider_reference: r.try_get("provider_reference")?,
                message: r.try_get("message")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .collect()
}
