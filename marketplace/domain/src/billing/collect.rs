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
use serde::Serialize;
use sqlx::Row;

use super::charges::ChargeStatus;
use super::ids::ChargeId;
use super::ledger::{self, Account, Head, Kind};
use super::provider::{Outcome, ProviderRequest};
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

struct Claim {
    key: String,
    attempt: i64,
    request: ProviderRequest,
    /// An attempt whose outcome is unknown: ask, do not collect.
    resolve: bool,
}

/// Collects one charge if it is due at `now` (`force`: due now whatever its schedule, as
/// when a tenant settles).
pub async fn collect(market: &Market, id: &ChargeId, now: i64, force: bool) -> Result<Collected, MarketError> {
    let Some(claim) = claim(market, id, now, force).await? else { return Ok(Collected::Skipped) };
    let provider = &market.billing.payments;
    let answer = if claim.resolve {
        match provider.collection(&claim.key).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => return abandon(market, id, &claim, now).await,
            Err(error) => Err(error),
        }
    } else {
        provider.collect(&claim.request).await
    };
    match answer {
        Ok(Outcome::Succeeded { reference }) => succeeded(market, id, &claim, &reference, now).await,
        Ok(Outcome::Refused { reason }) => declined(market, id, &claim, &reason, now).await,
        Err(error) => {
            let mut tx = market.db.write_tx().await?;
            sqlx::query(
                "UPDATE payment_attempts SET status = 'unknown', message = $3 WHERE charge_id = $1 AND attempt = $2",
            )
            .bind(id.as_str())
            .bind(claim.attempt)
            .bind(error.to_string())
            .execute(&mut *tx)
            .await?;
            // Resolvable by the next run, on any node.
            sqlx::query("UPDATE charges SET claimed_until = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            market.runner.metrics.record_collection("unknown");
            Ok(Collected::Unknown)
        }
    }
}

/// Claims the next attempt (or the unresolved one) under the charge's row lock.
async fn claim(market: &Market, id: &ChargeId, now: i64, force: bool) -> Result<Option<Claim>, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let row = sqlx::query(&format!(
        "SELECT tenant_id, plugin_id, line, currency, amount_minor, status, attempts, next_attempt_at, claimed_until \
         FROM charges WHERE id = $1{}",
        market.db.for_update()
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("charge {id}")))?;
    let status = charge_status(&row)?;
    let attempts: i64 = row.try_get("attempts")?;
    let next_attempt_at: Option<i64> = row.try_get("next_attempt_at")?;
    let claimed_until: Option<i64> = row.try_get("claimed_until")?;
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
    let claim = match status {
        ChargeStatus::Collecting if claimed_until.unwrap_or(0) > now => None,
        ChargeStatus::Collecting => {
            let key = attempt_key(id, attempts);
            Some(Claim { request: request(&key), key, attempt: attempts, resolve: true })
        }
        ChargeStatus::Pending | ChargeStatus::Failed if force || next_attempt_at.is_some_and(|at| at <= now) => {
            let attempt = attempts + 1;
            let key = attempt_key(id, attempt);
            sqlx::query(
                "INSERT INTO payment_attempts (charge_id, attempt, idempotency_key, status, started_at) \
                 VALUES ($1, $2, $3, 'started', $4)",
            )
            .bind(id.as_str())
            .bind(attempt)
            .bind(&key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Some(Claim { request: request(&key), key, attempt, resolve: false })
        }
        _ => None,
    };
    if let Some(claim) = &claim {
        sqlx::query("UPDATE charges SET status = 'collecting', attempts = $2, claimed_until = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(claim.attempt)
            .bind(now + CLAIM_MS)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(claim)
}

/// The `status` column of a charge row.
pub(crate) fn charge_status(row: &sqlx::any::AnyRow) -> Result<ChargeStatus, MarketError> {
    row.try_get::<String, _>("status")?.parse().map_err(|_| storage("stored charge status"))
}

fn attempt_key(id: &ChargeId, attempt: i64) -> String {
    format!("{id}:{attempt}")
}

/// The provider never carried the attempt out: it ends `abandoned` and the charge is due
/// again at once (a new attempt under a new key).
async fn abandon(market: &Market, id: &ChargeId, claim: &Claim, now: i64) -> Result<Collected, MarketError> {
    let mut tx = market.db.write_tx().await?;
    finish_attempt(&mut tx, id, claim.attempt, "abandoned", None, Some("the provider has no record of it"), now)
        .await?;
    sqlx::query(
        "UPDATE charges SET status = 'pending', next_attempt_at = $2, claimed_until = NULL \
         WHERE id = $1 AND status = 'collecting' AND attempts = $3",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(claim.attempt)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Collected::Unknown)
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

/// Records a success: the split under the policy in force, the collection posting, the
/// partner's new tier position; resumes an install paused for payment once nothing failed
/// remains. Only the claimed attempt may conclude the charge.
async fn succeeded(
    market: &Market,
    id: &ChargeId,
    claim: &Claim,
    reference: &str,
    now: i64,
) -> Result<Collected, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let row = sqlx::query(&format!(
        "SELECT c.install_id, c.tenant_id, c.plugin_id, c.publisher, c.currency, c.amount_minor, c.status, c.attempts, \
         p.plan_key FROM charges c JOIN plans p ON p.id = c.plan_id WHERE c.id = $1{}",
        market.db.for_update_of("c")
    ))
    .bind(id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if charge_status(&row)? != ChargeStatus::Collecting || row.try_get::<i64, _>("attempts")? != claim.attempt {
        return Ok(Collected::Skipped);
    }
    let (install, tenant, plugin, publisher, plan_key): (String, String, String, String, String) = (
        row.try_get("install_id")?,
        row.try_get("tenant_id")?,
        row.try_get("plugin_id")?,
        row.try_get("publisher")?,
        row.try_get("plan_key")?,
    );
    let currency = Currency::from_code(&row.try_get::<String, _>("currency")?).map_err(super::money_error)?;
    let amount: i64 = row.try_get("amount_minor")?;
    let lifetime = share::lock_lifetime(&mut tx, market.db.backend, &publisher, currency).await?;
    let (tiers, policy_id) = share::in_force(&mut tx, &publisher, &plugin, &plan_key, now).await?;
    let split = share::policy_in(&tiers, currency)?.split(lifetime, amount).map_err(super::money_error)?;
    let posting = ledger::posting(
        currency,
        &[
            (Account::PlatformCash, amount),
            (Account::TenantReceivable(tenant.clone()), -amount),
            (Account::PlatformUnsettledSales, amount),
            (Account::PlatformFeeRevenue, -split.fee),
            (Account::PartnerPayable(publisher.clone()), -split.partner),
        ],
    )?;
    let memo = format!(
        "collected {reference}; fee {} under {}",
        split.fee,
        policy_id.as_deref().unwrap_or("the default policy")
    );
    ledger::post(
        &mut tx,
        Head {
            kind: Kind::Collection,
            charge: Some(id),
            refund: None,
            payout: None,
            adjustment: None,
            idempotency: None,
            memo,
            at: now,
        },
        &posting,
    )
    .await?;
    sqlx::query(
        "UPDATE charges SET status = 'collected', fee_minor = $2, collected_at = $3, claimed_until = NULL, \
         next_attempt_at = NULL WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(split.fee)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE partner_totals SET lifetime_gross_minor = lifetime_gross_minor + $3 WHERE publisher = $1 AND currency = $2")
        .bind(&publisher)
        .bind(currency.code())
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    finish_attempt(&mut tx, id, claim.attempt, "succeeded", Some(reference), None, now).await?;
    crate::installs::lifecycle::run_if_paid(&mut tx, &install, now).await?;
    tx.commit().await?;
    market.runner.metrics.record_collection("succeeded");
    Ok(Collected::Succeeded)
}

async fn declined(
    market: &Market,
    id: &ChargeId,
    claim: &Claim,
    reason: &str,
    now: i64,
) -> Result<Collected, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let row = sqlx::query(&format!(
        "SELECT install_id, status, attempts FROM charges WHERE id = $1{}",
        market.db.for_update()
    ))
    .bind(id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if charge_status(&row)? != ChargeStatus::Collecting || row.try_get::<i64, _>("attempts")? != claim.attempt {
        return Ok(Collected::Skipped);
    }
    let install: String = row.try_get("install_id")?;
    let schedule = &market.billing.retry_after_ms;
    let next = usize::try_from(claim.attempt - 1).ok().and_then(|i| schedule.get(i)).map(|wait| now + wait);
    finish_attempt(&mut tx, id, claim.attempt, "declined", None, Some(reason), now).await?;
    sqlx::query("UPDATE charges SET status = 'failed', next_attempt_at = $2, claimed_until = NULL WHERE id = $1")
        .bind(id.as_str())
        .bind(next)
        .execute(&mut *tx)
        .await?;
    if next.is_none() {
        let why = format!(
            "{PAYMENT_FAILED}: charge {id} was declined {} times ({})",
            claim.attempt,
            nexus_host::limits::clip(reason, 200)
        );
        if crate::installs::lifecycle::pause_for_payment(&mut tx, &install, &why, now).await? {
            let detail = serde_json::json!({ "charge": id.as_str(), "attempts": claim.attempt, "reason": reason });
            crate::audit::record(&mut *tx, "system:billing", "install.paused_for_payment", &install, detail).await?;
        }
    }
    tx.commit().await?;
    market.runner.metrics.record_collection("declined");
    Ok(Collected::Declined)
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
