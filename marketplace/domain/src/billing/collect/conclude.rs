//! Concluding attempts: the provider's answers recorded in one transaction, after the calls.

use std::collections::HashMap;

use nexus_money::Currency;
use nexus_registry::db::{backend_of, placeholders};

use super::success::record_successes;
use super::{Answer, CHARGES_PER_TX, Claim, Collected, PAYMENT_FAILED};
use crate::accounts::TenantId;
use crate::billing::charges::ChargeStatus;
use crate::billing::ids::ChargeId;
use crate::billing::provider::{Outcome, ProviderError};
use crate::error::MarketError;
use crate::market::Market;

/// A charge being concluded, read under its row lock.
pub(super) struct Locked {
    pub(super) install: String,
    pub(super) tenant: TenantId,
    pub(super) plugin: String,
    pub(super) publisher: String,
    pub(super) plan_key: String,
    pub(super) currency: Currency,
    pub(super) amount: i64,
    /// Still collecting under this attempt: only the claimed attempt may conclude it.
    attempt: Option<i64>,
}

/// A claimed attempt and what the provider said about it.
pub(super) type Answered<'a> = (&'a ChargeId, &'a Claim, &'a Answer);

/// Records the provider's answers in one write transaction, under the charges' row locks
/// (taken in id order), then the partners' (in one order): successes split and posted
/// together ([`record_successes`]), declines scheduled or pausing their install, unknown
/// outcomes left for a later run. Per charge, what it did.
pub(super) async fn conclude(
    market: &Market,
    answered: &[Answered<'_>],
    now: i64,
) -> Result<Vec<(ChargeId, Collected)>, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let locked = lock_concluding(&mut tx, market, answered).await?;
    let concludes =
        |id: &ChargeId, claim: &Claim| locked.get(id.as_str()).filter(|charge| charge.attempt == Some(claim.attempt));
    let mut successes = Vec::new();
    for (id, claim, answer) in answered {
        if let (Answer::Said(Outcome::Succeeded { reference }), Some(charge)) = (answer, concludes(id, claim)) {
            successes.push((*id, *claim, reference.as_str(), charge));
        }
    }
    record_successes(&mut tx, market, &successes, now).await?;
    let mut out = Vec::with_capacity(answered.len());
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
    count_outcomes(market, answered, &out);
    Ok(out)
}

/// Locks the charges of `answered` (in id order, a chunk at a time) and reads each as
/// [`Locked`], by id.
async fn lock_concluding(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    answered: &[Answered<'_>],
) -> Result<HashMap<String, Locked>, MarketError> {
    let mut ids: Vec<&str> = answered.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked = HashMap::new();
    for chunk in ids.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "SELECT c.id, c.install_id, c.tenant_id, c.plugin_id, c.publisher, c.currency, c.amount_minor, c.status, \
             c.attempts, p.plan_key FROM charges c JOIN plans p ON p.id = c.plan_id WHERE c.id IN ({}) ORDER BY c.id{}",
            placeholders(1, chunk.len()),
            market.db.for_update_of("c")
        ));
        let mut query = sqlx::query_as::<_, LockedRow>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let collecting = ChargeStatus::stored(&row.status)? == ChargeStatus::Collecting;
            let charge = Locked {
                install: row.install_id,
                tenant: row.tenant_id,
                plugin: row.plugin_id,
                publisher: row.publisher,
                plan_key: row.plan_key,
                currency: crate::billing::ledger::stored_currency(&row.currency)?,
                amount: row.amount_minor,
                attempt: if collecting { Some(row.attempts) } else { None },
            };
            locked.insert(row.id, charge);
        }
    }
    Ok(locked)
}

/// A row [`lock_concluding`] reads.
#[derive(sqlx::FromRow)]
struct LockedRow {
    id: String,
    install_id: String,
    tenant_id: TenantId,
    plugin_id: String,
    publisher: String,
    currency: String,
    amount_minor: i64,
    status: String,
    attempts: i64,
    plan_key: String,
}

/// Counts what the committed collections did in the runner's metrics.
fn count_outcomes(market: &Market, answered: &[Answered<'_>], out: &[(ChargeId, Collected)]) {
    for (_, collected) in out {
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
    let (tenant, plugin, amount_minor, currency): (TenantId, String, i64, String) = sqlx::query_as(
        "SELECT i.tenant_id, i.plugin_id, c.amount_minor, c.currency FROM charges c JOIN installs i ON i.id = c.install_id \
         WHERE c.id = $1",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
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
    crate::mail::to_members(conn, now, "tenant", tenant.as_str(), &crate::mail::MONEY_ROLES, &notice).await?;
    Ok(())
}
