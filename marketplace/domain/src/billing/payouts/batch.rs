//! Paying many partners with few statements: [`open`] writes a batch of pending payouts and
//! the ledger transactions that take them out of the payables in one database transaction,
//! under every partner's payable lock (taken in one order); the provider is asked about each
//! payout outside any transaction ([`ask`]); [`conclude`] records a batch of answers in one
//! transaction. A crash between the steps leaves payouts pending under their claim, for the
//! next run to ask the provider about, as one payout at a time did.

mod standing;

use std::collections::BTreeMap;

use nexus_money::Currency;
use nexus_money::ledger::Posting;
use nexus_registry::db::{backend_of, value_rows};

use self::standing::{Standing, standing};

use super::{CLAIM_MS, Carried, Payout, PayoutStatus};
use crate::billing::ledger::{self, Account, Head, Kind};
use crate::billing::provider::{Outcome, ProviderError, ProviderRequest};
use crate::billing::share;
use crate::error::MarketError;
use crate::ids::PayoutId;
use crate::market::Market;

/// A partner and currency to pay, as the run read them.
pub(super) type Due = (String, Currency);

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
    let (payouts, carried, settles) = decide(&standing, due, minimums, period, at)?;
    if payouts.is_empty() {
        tx.commit().await?;
        return Ok((payouts, carried));
    }
    insert_payouts(&mut tx, &payouts, &settles, period, at).await?;
    post_payouts(&mut tx, &payouts, period, at).await?;
    tx.commit().await?;
    Ok((payouts, carried))
}

/// The payouts to write, each with the ledger sequences it settles (after, through), and the
/// balances under their minimum.
type Decided = (Vec<Payout>, Vec<Carried>, Vec<(i64, i64)>);

/// The payouts `standing` allows for `due`, each with the ledger sequences it settles
/// (after, through), and the balances under their minimum.
fn decide(
    standing: &Standing,
    due: &[Due],
    minimums: &BTreeMap<String, i64>,
    period: &str,
    at: i64,
) -> Result<Decided, MarketError> {
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
            carried.push(Carried { publisher: key.0, currency: *currency, balance_minor: balance, minimum_minor });
            continue;
        }
        // It settles what came after the last payout that was not returned; what stood
        // before that is carried.
        let after = standing.after.get(&key).copied().unwrap_or(0);
        let (moved, through) = standing.since.get(&key).copied().unwrap_or((0, after));
        payouts.push(Payout {
            id: PayoutId::random()?,
            publisher: key.0,
            currency: *currency,
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
    Ok((payouts, carried, settles))
}

/// One multi-row `INSERT` of the pending `payouts`, claimed, with the sequences each settles.
async fn insert_payouts(
    conn: &mut sqlx::AnyConnection,
    payouts: &[Payout],
    settles: &[(i64, i64)],
    period: &str,
    at: i64,
) -> Result<(), MarketError> {
    let sql = backend_of(conn).positional(format!(
        "INSERT INTO payouts (id, publisher, currency, period_key, amount_minor, status, carried_minor, \
         settles_after_seq, settles_through_seq, claimed_until, created_at) VALUES {}",
        value_rows(payouts.len(), 11)
    ));
    let mut insert = sqlx::query(&sql);
    for (payout, (after, through)) in payouts.iter().zip(settles) {
        insert = insert
            .bind(payout.id.as_str())
            .bind(payout.publisher.as_str())
            .bind(payout.currency.code())
            .bind(period)
            .bind(payout.amount_minor)
            .bind(PayoutStatus::Pending.as_str())
            .bind(payout.carried_minor)
            .bind(*after)
            .bind(*through)
            .bind(at + CLAIM_MS)
            .bind(at);
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// The ledger transactions that take `payouts` out of the payables, in one
/// [`ledger::post_many`].
async fn post_payouts(
    conn: &mut sqlx::AnyConnection,
    payouts: &[Payout],
    period: &str,
    at: i64,
) -> Result<(), MarketError> {
    let mut postings = Vec::with_capacity(payouts.len());
    for payout in payouts {
        let currency = payout.currency;
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
    ledger::post_many(conn, &heads).await?;
    Ok(())
}

pub(super) fn request(payout: &Payout) -> Result<ProviderRequest, MarketError> {
    Ok(ProviderRequest {
        key: payout.id.to_string(),
        party: payout.publisher.clone(),
        amount_minor: payout.amount_minor,
        currency: payout.currency,
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
        match provider.payout(payout.id.as_str()).await {
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
        .map(|(payout, _)| (payout.publisher.clone(), payout.currency))
        .collect();
    share::lock_lifetimes(&mut tx, market.db.backend, &returned).await?;
    let mut out = Vec::with_capacity(answers.len());
    let mut postings = Vec::new();
    for (payout, outcome) in answers {
        match conclude_one(&mut tx, payout, outcome, at).await? {
            Some((concluded, kind, memo, posting)) => {
                postings.push((payout.id.as_str(), kind, memo, posting));
                out.push(concluded);
            }
            None => out.push(Concluded::Skipped),
        }
    }
    post_concluded(&mut tx, &postings, at).await?;
    tx.commit().await?;
    Ok(out)
}

/// Records one answer: the payout's new status, the partner's mail if paid; the posting
/// to write for it, or `None` if another node recorded it first.
async fn conclude_one(
    conn: &mut sqlx::AnyConnection,
    payout: &Payout,
    outcome: &Result<String, String>,
    at: i64,
) -> Result<Option<(Concluded, Kind, String, Posting)>, MarketError> {
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
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
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
            [(Account::PlatformPayoutsInTransit, amount), (Account::PartnerPayable(payout.publisher.clone()), -amount)],
            format!("payout {} returned: {}", payout.id, reason.as_deref().unwrap_or_default()),
        ),
    };
    let currency = payout.currency;
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
        crate::mail::to_members(&mut *conn, at, "publisher", &payout.publisher, &crate::mail::MONEY_ROLES, &notice)
            .await?;
    }
    let concluded = if status == PayoutStatus::Paid { Concluded::Paid } else { Concluded::Failed };
    Ok(Some((concluded, kind, memo, ledger::posting(currency, &legs)?)))
}

/// The ledger transactions of the payouts concluded, in one [`ledger::post_many`] (none
/// without any).
async fn post_concluded(
    conn: &mut sqlx::AnyConnection,
    postings: &[(&str, Kind, String, Posting)],
    at: i64,
) -> Result<(), MarketError> {
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
        ledger::post_many(conn, &heads).await?;
    }
    Ok(())
}
