//! Paying many partners with few statements: [`open`] writes a batch of pending payouts and
//! the ledger transactions that take them out of the payables in one database transaction,
//! under every partner's payable lock (taken in one order); the provider is asked about each
//! payout outside any transaction ([`ask`]); [`conclude`] records a batch of answers in one
//! transaction. A crash between the steps leaves payouts pending under their claim, for the
//! next run to ask the provider about, as one payout at a time did.

use nexus_registry::db::backend_of;
use std::collections::{BTreeMap, BTreeSet};

use nexus_money::Currency;
use sqlx::Row;

use super::{CLAIM_MS, Carried, Payout, PayoutStatus};
use crate::billing::ledger::{self, Account, Head, Kind};
use crate::billing::money_error;
use crate::billing::provider::{Outcome, ProviderError, ProviderRequest};
use crate::billing::share;
use crate::error::MarketError;
use crate::market::Market;

/// A partner and currency to pay, as the run read them.
pub(super) type Due = (String, Currency);

/// `($n, $n+1, …)` rows of `width` values each.
fn rows(count: usize, width: usize) -> String {
    (0..count)
        .map(|row| format!("({})", (1..=width).map(|c| format!("${}", row * width + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the batch's partners have in the database, read under their locks.
struct Standing {
    /// Already paid (or being paid) in this period.
    done: BTreeSet<(String, String)>,
    balance: BTreeMap<(String, String), i64>,
    /// The last ledger sequence settled by a payout that was not returned.
    after: BTreeMap<(String, String), i64>,
    /// Since then: what the partner's payable moved, and the last sequence that moved it.
    since: BTreeMap<(String, String), (i64, i64)>,
}

/// The partners' `IN (…)` list from `$first`.
fn partners_in(first: usize, due: &[Due]) -> String {
    (first..first + due.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

async fn standing(conn: &mut sqlx::AnyConnection, due: &[Due], period: &str) -> Result<Standing, MarketError> {
    let key = |row: &sqlx::any::AnyRow| -> Result<(String, String), MarketError> {
        Ok((row.try_get("publisher")?, row.try_get("currency")?))
    };
    let sql = backend_of(conn).positional(format!(
        "SELECT publisher, currency FROM payouts WHERE period_key = $1 AND publisher IN ({})",
        partners_in(2, due)
    ));
    let mut query = sqlx::query(&sql).bind(period);
    for (publisher, _) in due {
        query = query.bind(publisher.as_str());
    }
    let done = query.fetch_all(&mut *conn).await?.iter().map(key).collect::<Result<_, _>>()?;

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

    // What moved each payable after its last settled sequence: a range of the statement
    // index per partner, not its history.
    let sql = backend_of(conn).positional(format!(
        "WITH a (publisher, currency, settled) AS (VALUES {}) \
         SELECT a.publisher, a.currency, CAST(SUM(x.amount_minor) AS BIGINT) AS moved, MAX(x.seq) AS through \
         FROM a JOIN partner_entries x ON x.publisher = a.publisher AND x.currency = a.currency AND x.seq > a.settled \
         GROUP BY a.publisher, a.currency",
        rows(due.len(), 3)
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
    Ok(Standing { done, balance, after, since })
}

/// Writes the period's payouts of `due` (at or over `minimums`) with the ledger transactions
/// that take them out of the payables, in one database transaction; returns the payouts
/// written and the balances found under their minimum.
pub(super) async fn open(
    market: &Market,
    due: &[Due],
    minimums: &BTreeMap<String, i64>,
    period: &str,
    at: i64,
) -> Result<(Vec<Payout>, Vec<Carried>), MarketError> {
    let mut tx = market.db.write_tx().await?;
    share::lock_lifetimes(&mut tx, market.db.backend, due).await?;
    let standing = standing(&mut tx, due, period).await?;
    let (mut payouts, mut carried) = (Vec::new(), Vec::new());
    let mut settles = Vec::new();
    for (publisher, currency) in due {
        let key = (publisher.clone(), currency.code().to_string());
        let balance = standing.balance.get(&key).copied().unwrap_or(0);
        if standing.done.contains(&key) || balance <= 0 {
            continue;
        }
        let minimum_minor = minimums.get(currency.code()).copied().unwrap_or(0);
        if balance < minimum_minor {
            carried.push(Carried { publisher: key.0, currency: key.1, balance_minor: balance, minimum_minor });
            continue;
        }
        // It settles what came after the last payout that was not returned; what stood
        // before that is carried.
        let after = standing.after.get(&key).copied().unwrap_or(0);
        let (moved, through) = standing.since.get(&key).copied().unwrap_or((0, after));
        payouts.push(Payout {
            id: format!("pay_{}", nexus_registry::publishers::random_hex(8)?),
            publisher: key.0,
            currency: key.1,
            period: period.to_string(),
            amount_minor: balance,
            status: PayoutStatus::Pending,
            carried_minor: balance - moved,
            provider_reference: None,
            failure_reason: None,
            created_at: at,
            finished_at: None,
        });
        settles.push((after, through));
    }
    if payouts.is_empty() {
        tx.commit().await?;
        return Ok((payouts, carried));
    }
    let sql = backend_of(&tx).positional(format!(
        "INSERT INTO payouts (id, publisher, currency, period_key, amount_minor, status, carried_minor, \
         settles_after_seq, settles_through_seq, claimed_until, created_at) VALUES {}",
        rows(payouts.len(), 11)
    ));
    let mut insert = sqlx::query(&sql);
    for (payout, (after, through)) in payouts.iter().zip(&settles) {
        insert = insert
            .bind(payout.id.as_str())
            .bind(payout.publisher.as_str())
            .bind(payout.currency.as_str())
            .bind(period)
            .bind(payout.amount_minor)
            .bind(PayoutStatus::Pending.as_str())
            .bind(payout.carried_minor)
            .bind(*after)
            .bind(*through)
            .bind(at + CLAIM_MS)
            .bind(at);
    }
    insert.execute(&mut *tx).await?;
    let mut postings = Vec::with_capacity(payouts.len());
    for payout in &payouts {
        let currency = Currency::from_code(&payout.currency).map_err(money_error)?;
        let amount = payout.amount_minor;
        let legs =
            [(Account::PartnerPayable(payout.publisher.clone()), amount), (Account::PlatformPayoutsInTransit, -amount)];
        postings.push(ledger::posting(currency, &legs)?);
    }
    let heads: Vec<_> = payouts
        .iter()
        .zip(&postings)
        .map(|(payout, posting)| {
            let head = Head {
                kind: Kind::Payout,
                charge: None,
                refund: None,
                payout: Some(payout.id.as_str()),
                adjustment: None,
                idempotency: None,
                memo: format!("payout {period} to {}", payout.publisher),
                at,
            };
            (head, posting)
        })
        .collect();
    ledger::post_many(&mut tx, &heads).await?;
    tx.commit().await?;
    Ok((payouts, carried))
}

pub(super) fn request(payout: &Payout) -> Result<ProviderRequest, MarketError> {
    Ok(ProviderRequest {
        key: payout.id.clone(),
        party: payout.publisher.clone(),
        amount_minor: payout.amount_minor,
        currency: Currency::from_code(&payout.currency).map_err(money_error)?,
        description: format!("Nexus payout {}", payout.period),
    })
}

/// The provider's answer about a pending payout: pays it, or (`resolve`) says what became of
/// it, sending the same key again only if the provider never received it.
pub(super) async fn ask(
    market: &Market,
    payout: &Payout,
    resolve: bool,
) -> Result<Result<Outcome, ProviderError>, MarketError> {
    let request = request(payout)?;
    let provider = &market.billing.payouts;
    Ok(if resolve {
        match provider.payout(&payout.id).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => provider.pay(&request).await,
            Err(error) => Err(error),
        }
    } else {
        provider.pay(&request).await
    })
}

/// How one payout ended in [`conclude`].
pub(super) enum Concluded {
    Paid,
    Failed,
    /// Another node recorded it first.
    Skipped,
}

/// Records the provider's answers in one database transaction: paid (out of cash) or
/// returned (back to the payable, under the partner's lock).
pub(super) async fn conclude(
    market: &Market,
    answers: &[(Payout, Result<String, String>)],
    at: i64,
) -> Result<Vec<Concluded>, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let returned: Vec<Due> = answers
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .map(|(payout, _)| Ok((payout.publisher.clone(), Currency::from_code(&payout.currency).map_err(money_error)?)))
        .collect::<Result<_, MarketError>>()?;
    share::lock_lifetimes(&mut tx, market.db.backend, &returned).await?;
    let mut out = Vec::with_capacity(answers.len());
    let mut postings = Vec::new();
    for (payout, outcome) in answers {
        let (status, reference, reason) = match outcome {
            Ok(reference) => (PayoutStatus::Paid, Some(reference.as_str()), None),
            Err(reason) => (PayoutStatus::Failed, None, Some(nexus_host::limits::clip(reason, 500))),
        };
        let changed = sqlx::query(
            "UPDATE payouts SET status = $2, provider_reference = $3, failure_reason = $4, finished_at = $5, \
             claimed_until = NULL WHERE id = $1 AND status = 'pending'",
        )
        .bind(&payout.id)
        .bind(status.as_str())
        .bind(reference)
        .bind(reason.as_deref())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            out.push(Concluded::Skipped);
            continue;
        }
        let amount = payout.amount_minor;
        let (kind, legs, memo) = match status {
            PayoutStatus::Paid => (
                Kind::PayoutPaid,
                [(Account::PlatformPayoutsInTransit, amount), (Account::PlatformCash, -amount)],
                format!("payout {} paid ({})", payout.id, reference.unwrap_or_default()),
            ),
            _ => (
                Kind::PayoutReturned,
                [
                    (Account::PlatformPayoutsInTransit, amount),
                    (Account::PartnerPayable(payout.publisher.clone()), -amount),
                ],
                format!("payout {} returned: {}", payout.id, reason.as_deref().unwrap_or_default()),
            ),
        };
        let currency = Currency::from_code(&payout.currency).map_err(money_error)?;
        if status == PayoutStatus::Paid {
            let paid = nexus_money::Money::new(amount, currency).to_string();
            let notice = crate::mail::Mail {
                kind: "payout-sent",
                to: String::new(),
                subject: format!("Payout {}: {paid} sent", payout.id),
                body: format!(
                    "Hello,\n\nNexus sent {} a payout of {paid} (reference {}). Its statement lines are in the \
                     console's earnings and payouts.\n",
                    payout.publisher,
                    reference.unwrap_or_default()
                ),
            };
            crate::mail::to_members(&mut tx, at, "publisher", &payout.publisher, &crate::mail::MONEY_ROLES, &notice)
                .await?;
        }
        postings.push((payout.id.as_str(), kind, memo, ledger::posting(currency, &legs)?));
        out.push(if status == PayoutStatus::Paid { Concluded::Paid } else { Concluded::Failed });
    }
    let heads: Vec<_> = postings
        .iter()
        .map(|(id, kind, memo, posting)| {
            let head = Head {
                kind: *kind,
                charge: None,
                refund: None,
                payout: Some(*id),
                adjustment: None,
                idempotency: None,
                memo: memo.clone(),
                at,
            };
            (head, posting)
        })
        .collect();
    if !heads.is_empty() {
        ledger::post_many(&mut tx, &heads).await?;
    }
    tx.commit().await?;
    Ok(out)
}
