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
//!
//! The steps: `collect/claim.rs` claims attempts in one transaction; [`collect_many`] asks
//! the provider outside any transaction; `collect/conclude.rs` records the answers in one
//! transaction, the successes through `collect/success.rs`.

mod claim;
mod conclude;
mod success;

use serde::Serialize;
use sqlx::FromRow;

use self::claim::{Claimed, claim_many};
use self::conclude::{Answered, conclude};
use super::charges::ChargeStatus;
use super::ids::ChargeId;
use super::provider::{Outcome, ProviderError, ProviderRequest};
use crate::error::MarketError;
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
    let claims = match claim_all(market, ids, now, force).await {
        Ok(claims) => claims,
        Err(failed) => return (failed, Vec::new()),
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
    let answers = ask_all(market, &claimed).await;
    let answered: Vec<Answered<'_>> =
        claimed.iter().zip(&answers).map(|((id, claim), answer)| (id, claim, answer)).collect();
    conclude_all(market, &answered, now, &mut out).await;
    let abandoned = answered
        .iter()
        .filter(|(_, _, answer)| matches!(answer, Answer::NeverCarriedOut))
        .map(|(id, _, _)| (*id).clone())
        .collect();
    (out, abandoned)
}

/// Claims `ids` in one transaction ([`claim_many`]); if that fails, one by one, so that one
/// charge's problem never stops the others'. A single charge that fails: its error.
async fn claim_all(
    market: &Market,
    ids: &[ChargeId],
    now: i64,
    force: bool,
) -> Result<Vec<Claimed>, Vec<(ChargeId, Collection)>> {
    match claim_many(market, ids, now, force).await {
        Ok(claims) => Ok(claims),
        Err(error) if ids.len() > 1 => {
            tracing::warn!(%error, charges = ids.len(), "claiming a batch of charges failed; claiming them one by one");
            let mut claims = Vec::with_capacity(ids.len());
            for id in ids {
                match claim_many(market, std::slice::from_ref(id), now, force).await {
                    Ok(claim) => claims.extend(claim),
                    Err(error) => claims.push((id.clone(), Err(error))),
                }
            }
            Ok(claims)
        }
        Err(error) => Err(ids.first().map(|id| (id.clone(), Err(error))).into_iter().collect()),
    }
}

/// Asks the provider about each claimed attempt, outside any transaction,
/// [`CALLS_IN_FLIGHT`] at a time; the answers in `claimed`'s order.
async fn ask_all(market: &Market, claimed: &[(ChargeId, Claim)]) -> Vec<Answer> {
    let mut answers: Vec<Answer> = Vec::with_capacity(claimed.len());
    for calls in claimed.chunks(CALLS_IN_FLIGHT) {
        let asked: Vec<_> = calls.iter().map(|(_, claim)| ask(market, claim)).collect();
        answers.extend(futures_util::future::join_all(asked).await);
    }
    answers
}

/// Records `answered` in one transaction ([`conclude`]); if that fails, one by one. What
/// each charge did goes to `out`.
async fn conclude_all(market: &Market, answered: &[Answered<'_>], now: i64, out: &mut Vec<(ChargeId, Collection)>) {
    match conclude(market, answered, now).await {
        Ok(concluded) => out.extend(concluded.into_iter().map(|(id, collected)| (id, Ok(collected)))),
        Err(error) if answered.len() > 1 => {
            tracing::warn!(%error, charges = answered.len(), "recording a batch of collections failed; one by one");
            for one in answered {
                match conclude(market, std::slice::from_ref(one), now).await {
                    Ok(concluded) => out.extend(concluded.into_iter().map(|(id, collected)| (id, Ok(collected)))),
                    Err(error) => out.push((one.0.clone(), Err(error))),
                }
            }
        }
        Err(error) => out.extend(answered.first().map(|(id, _, _)| ((*id).clone(), Err(error)))),
    }
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

/// The `status` column of a charge row (a refund checks it before reading the rest).
pub(crate) fn charge_status(row: &sqlx::any::AnyRow) -> Result<ChargeStatus, MarketError> {
    #[derive(sqlx::FromRow)]
    struct Status {
        status: String,
    }
    ChargeStatus::stored(&Status::from_row(row)?.status)
}

fn attempt_key(id: &ChargeId, attempt: i64) -> String {
    format!("{id}:{attempt}")
}

/// One attempt as the tenant and operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i64,
    pub status: String,
    pub provider_reference: Option<String>,
    pub message: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn attempts(market: &Market, id: &ChargeId) -> Result<Vec<Attempt>, MarketError> {
    let attempts = sqlx::query_as::<_, Attempt>(
        "SELECT attempt, status, provider_reference, message, started_at, finished_at FROM payment_attempts \
         WHERE charge_id = $1 ORDER BY attempt",
    )
    .bind(id.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    Ok(attempts)
}
