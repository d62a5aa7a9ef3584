//! Recording successes: split under the revenue-share policy, posted, and the charges,
//! attempts and partners' lifetime totals moved, a few statements whatever their number.

use std::collections::HashMap;

use nexus_money::Currency;
use nexus_money::ledger::Posting;
use nexus_registry::db::{backend_of, placeholders, value_rows};

use super::conclude::Locked;
use super::{CHARGES_PER_TX, Claim};
use crate::billing::ids::ChargeId;
use crate::billing::ledger::{self, Head, Kind};
use crate::billing::share;
use crate::error::MarketError;
use crate::market::Market;

/// A collected charge to record: its id, the attempt, the provider's reference, the charge.
pub(super) type Success<'a> = (&'a ChargeId, &'a Claim, &'a str, &'a Locked);

/// Records successes: each split under the policy in force at the partner's lifetime
/// position (the partners' rows locked in one order, the charges split in id order, each
/// moving its partner's position for the next), the collection postings, the charges'
/// new status, the partners' new positions, the attempts; resumes installs paused for
/// payment once nothing failed remains. A few statements whatever their number.
pub(super) async fn record_successes(
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
    let (postings, fees) = split_all(conn, successes, &mut lifetimes, now).await?;
    let heads: Vec<_> = postings
        .iter()
        .map(|(id, memo, posting)| (Head::of_charge(Kind::Collection, id, memo.clone(), now), posting))
        .collect();
    ledger::post_many(conn, &heads).await?;
    let collected: Vec<(&Success, i64)> = successes.iter().zip(fees).collect();
    for chunk in collected.chunks(CHARGES_PER_TX) {
        mark_collected(conn, chunk, now).await?;
        mark_succeeded(conn, chunk, now).await?;
    }
    add_gross(conn, successes).await?;
    resume_paid(conn, successes, now).await
}

/// Each success's collection posting (with its memo) and fee: split under the policy in
/// force for its plan (read once per plan) at its partner's lifetime position, which it
/// then moves for the next.
async fn split_all<'a>(
    conn: &mut sqlx::AnyConnection,
    successes: &[Success<'a>],
    lifetimes: &mut HashMap<(String, String), i64>,
    now: i64,
) -> Result<(Vec<(&'a ChargeId, String, Posting)>, Vec<i64>), MarketError> {
    let mut policies = HashMap::new();
    let mut postings = Vec::with_capacity(successes.len());
    let mut fees = Vec::with_capacity(successes.len());
    for (id, _, reference, charge) in successes {
        let scope = (charge.publisher.as_str(), charge.plugin.as_str(), charge.plan_key.as_str());
        if let std::collections::hash_map::Entry::Vacant(slot) = policies.entry(scope) {
            slot.insert(share::in_force(conn, scope.0, scope.1, scope.2, now).await?);
        }
        let (tiers, policy_id) = &policies[&scope];
        let lifetime = lifetimes.entry((charge.publisher.clone(), charge.currency.code().to_string())).or_default();
        let split = share::policy_in(tiers, charge.currency)?
            .split(*lifetime, charge.amount)
            .map_err(crate::billing::money_error)?;
        *lifetime += charge.amount;
        let posting =
            nexus_money::ledger::collected_charge(split, charge.currency, charge.tenant.as_str(), &charge.publisher)
                .map_err(crate::billing::money_error)?;
        let memo = format!(
            "collected {reference}; fee {} under {}",
            split.fee,
            policy_id.as_deref().unwrap_or("the default policy")
        );
        postings.push((*id, memo, posting));
        fees.push(split.fee);
    }
    Ok((postings, fees))
}

/// The charges of `chunk` collected, with their fees.
async fn mark_collected(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(&Success<'_>, i64)],
    now: i64,
) -> Result<(), MarketError> {
    let sql = backend_of(conn).positional(format!(
        "WITH v (id, fee_minor) AS (VALUES {}) UPDATE charges SET status = 'collected', fee_minor = v.fee_minor, \
         collected_at = ${n}, claimed_until = NULL, next_attempt_at = NULL FROM v WHERE charges.id = v.id",
        value_rows(chunk.len(), 2),
        n = chunk.len() * 2 + 1
    ));
    let mut update = sqlx::query(&sql);
    for ((id, _, _, _), fee) in chunk {
        update = update.bind(id.as_str()).bind(*fee);
    }
    update.bind(now).execute(&mut *conn).await?;
    Ok(())
}

/// The attempts of `chunk` succeeded, with the provider's references.
async fn mark_succeeded(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(&Success<'_>, i64)],
    now: i64,
) -> Result<(), MarketError> {
    let sql = backend_of(conn).positional(format!(
        "WITH v (charge_id, attempt, reference) AS (VALUES {}) UPDATE payment_attempts SET status = 'succeeded', \
         provider_reference = v.reference, message = NULL, finished_at = ${n} FROM v \
         WHERE payment_attempts.charge_id = v.charge_id AND payment_attempts.attempt = v.attempt",
        value_rows(chunk.len(), 3),
        n = chunk.len() * 3 + 1
    ));
    let mut update = sqlx::query(&sql);
    for ((id, claim, reference, _), _) in chunk {
        update = update.bind(id.as_str()).bind(claim.attempt).bind(*reference);
    }
    update.bind(now).execute(&mut *conn).await?;
    Ok(())
}

/// Adds the successes' amounts to their partners' lifetime gross, per partner and currency.
async fn add_gross(conn: &mut sqlx::AnyConnection, successes: &[Success<'_>]) -> Result<(), MarketError> {
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
            value_rows(chunk.len(), 3)
        ));
        let mut update = sqlx::query(&sql);
        for ((publisher, currency), amount) in chunk {
            update = update.bind(*publisher).bind(*currency).bind(*amount);
        }
        update.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The lifetime gross of each partner and currency of `partners` (locked by the caller).
async fn lifetimes(
    conn: &mut sqlx::AnyConnection,
    partners: &[(String, Currency)],
) -> Result<HashMap<(String, String), i64>, MarketError> {
    let mut keys: Vec<(&str, &str)> = partners.iter().map(|(p, c)| (p.as_str(), c.code())).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHARGES_PER_TX) {
        let sql = backend_of(conn).positional(format!(
            "WITH v (publisher, currency) AS (VALUES {}) SELECT t.publisher, t.currency, t.lifetime_gross_minor \
             FROM partner_totals t JOIN v ON t.publisher = v.publisher AND t.currency = v.currency",
            value_rows(chunk.len(), 2)
        ));
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for (publisher, currency) in chunk {
            query = query.bind(*publisher).bind(*currency);
        }
        for (publisher, currency, lifetime_gross_minor) in query.fetch_all(&mut *conn).await? {
            out.insert((publisher, currency), lifetime_gross_minor);
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
