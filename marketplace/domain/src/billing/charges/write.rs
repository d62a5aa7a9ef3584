//! Writing charges: each with the ledger transaction that bills it, in the caller's
//! transaction; one that exists already is not written again.

use nexus_money::Currency;
use nexus_money::period::Period;
use nexus_registry::ErrorCode;
use nexus_registry::db::backend_of;
use sqlx::Row;

use super::{ChargeDetail, ChargeStatus};
use crate::accounts::TenantId;
use crate::billing::ids::ChargeId;
use crate::billing::ledger::{self, Account, Head, Kind};
use crate::billing::plans::Plan;
use crate::error::{MarketError, storage};

/// What the billing of one install knows about it.
#[derive(Debug, Clone)]
pub struct Billed<'a> {
    pub install: &'a str,
    pub tenant: &'a TenantId,
    pub plugin: &'a str,
    pub publisher: &'a str,
    pub plan: &'a Plan,
}

/// A charge about to be written.
pub struct NewCharge {
    pub line: String,
    pub period: Period,
    pub currency: Currency,
    pub amount_minor: i64,
    pub detail: ChargeDetail,
}

/// Writes a charge and the ledger transaction that bills it, unless a charge for the same
/// install, line and period start exists: then nothing is written and `None` comes back.
pub async fn insert(
    conn: &mut sqlx::AnyConnection,
    billed: &Billed<'_>,
    new: NewCharge,
    now: i64,
) -> Result<Option<ChargeId>, MarketError> {
    let mut ids = insert_many(conn, &[(billed.clone(), new)], now).await?;
    Ok(ids.pop().flatten())
}

/// Charges written per multi-row `INSERT` (15 values each: well under both backends' limits).
const CHARGES_PER_STATEMENT: usize = 200;

/// [`insert`] of many charges: multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id`, then
/// the ledger transactions of those written, in a few statements whatever their number. Per
/// line, in order, the id of the charge written or `None` if it existed.
pub async fn insert_many(
    conn: &mut sqlx::AnyConnection,
    lines: &[(Billed<'_>, NewCharge)],
    now: i64,
) -> Result<Vec<Option<ChargeId>>, MarketError> {
    if lines.iter().any(|(_, new)| new.amount_minor < 0) {
        return Err(MarketError::invalid(ErrorCode::InvalidAmount, "a charge is never negative"));
    }
    let ids = lines.iter().map(|_| ChargeId::random()).collect::<Result<Vec<_>, _>>()?;
    let mut written = std::collections::HashSet::new();
    for (chunk, chunk_ids) in lines.chunks(CHARGES_PER_STATEMENT).zip(ids.chunks(CHARGES_PER_STATEMENT)) {
        written.extend(insert_chunk(conn, chunk, chunk_ids, now).await?);
    }
    let ids: Vec<Option<ChargeId>> = ids.into_iter().map(|id| written.contains(id.as_str()).then_some(id)).collect();
    post_charges(conn, lines, &ids, now).await?;
    bills_issued(conn, lines, &ids, now).await?;
    Ok(ids)
}

/// One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` of `chunk` under `ids`: the
/// ids of the charges written.
async fn insert_chunk(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(Billed<'_>, NewCharge)],
    ids: &[ChargeId],
    now: i64,
) -> Result<Vec<String>, MarketError> {
    let values: Vec<String> = (0..chunk.len())
        .map(|row| {
            let p: Vec<String> = (1..=15).map(|c| format!("${}", row * 15 + c)).collect();
            format!("({}, 0, {}, 0, 0, {})", p[..13].join(", "), p[13], p[14])
        })
        .collect();
    let sql = backend_of(conn).positional(format!(
        "INSERT INTO charges (id, install_id, tenant_id, plugin_id, publisher, plan_id, line, period_start, \
         period_end, currency, amount_minor, detail, status, attempts, next_attempt_at, refunded_minor, \
         fee_refunded_minor, created_at) VALUES {} ON CONFLICT (install_id, line, period_start) DO NOTHING \
         RETURNING id",
        values.join(", ")
    ));
    let mut insert = sqlx::query(&sql);
    for ((billed, new), id) in chunk.iter().zip(ids) {
        let status = if new.amount_minor == 0 { ChargeStatus::NothingDue } else { ChargeStatus::Pending };
        insert = insert
            .bind(id.as_str())
            .bind(billed.install)
            .bind(billed.tenant)
            .bind(billed.plugin)
            .bind(billed.publisher)
            .bind(&billed.plan.id)
            .bind(&new.line)
            .bind(new.period.start_ms)
            .bind(new.period.end_ms)
            .bind(new.currency.code())
            .bind(new.amount_minor)
            .bind(serde_json::to_string(&new.detail).map_err(storage)?)
            .bind(status.as_str())
            .bind((status == ChargeStatus::Pending).then_some(now))
            .bind(now);
    }
    let mut written = Vec::with_capacity(chunk.len());
    for row in insert.fetch_all(&mut *conn).await? {
        written.push(row.try_get::<String, _>("id")?);
    }
    Ok(written)
}

/// The ledger transactions billing the charges written (`ids`) with an amount, in one
/// [`ledger::post_many`].
async fn post_charges(
    conn: &mut sqlx::AnyConnection,
    lines: &[(Billed<'_>, NewCharge)],
    ids: &[Option<ChargeId>],
    now: i64,
) -> Result<(), MarketError> {
    let mut postings = Vec::new();
    for ((billed, new), id) in lines.iter().zip(ids) {
        let Some(id) = id.as_ref().filter(|_| new.amount_minor > 0) else { continue };
        let posting = ledger::posting(
            new.currency,
            &[
                (Account::TenantReceivable(billed.tenant.to_string()), new.amount_minor),
                (Account::PlatformUnsettledSales, -new.amount_minor),
            ],
        )?;
        let memo = format!("{} {} of {} for {}", billed.plan.key, new.line, billed.plugin, billed.install);
        postings.push((id, memo, posting));
    }
    let heads: Vec<_> = postings
        .iter()
        .map(|(id, memo, posting)| (Head::of_charge(Kind::Charge, id, memo.clone(), now), posting))
        .collect();
    if !heads.is_empty() {
        ledger::post_many(conn, &heads).await?;
    }
    Ok(())
}

/// Queues `bill.issued` for each charge written with an amount, for tenants with an
/// endpoint that listens (one read finds them), in the transaction that wrote the charges.
async fn bills_issued(
    conn: &mut sqlx::AnyConnection,
    lines: &[(Billed<'_>, NewCharge)],
    ids: &[Option<ChargeId>],
    now: i64,
) -> Result<(), MarketError> {
    let issued: Vec<(&Billed<'_>, &NewCharge, &ChargeId)> = lines
        .iter()
        .zip(ids)
        .filter_map(|((billed, new), id)| id.as_ref().filter(|_| new.amount_minor > 0).map(|id| (billed, new, id)))
        .collect();
    let tenants: Vec<&TenantId> = issued.iter().map(|(billed, _, _)| billed.tenant).collect();
    let listening = crate::webhooks::listening_among(conn, &tenants, crate::webhooks::WebhookKind::BillIssued).await?;
    for (billed, new, id) in issued.into_iter().filter(|(billed, _, _)| listening.contains(billed.tenant)) {
        let data = serde_json::json!({
            "charge": id.as_str(), "install": billed.install, "plugin": billed.plugin, "plan": billed.plan.key,
            "line": new.line, "amount_minor": new.amount_minor, "currency": new.currency.code(),
            "period_start": new.period.start_ms, "period_end": new.period.end_ms,
        });
        let message = format!("msg_bill_{}", id.as_str());
        crate::webhooks::enqueue(conn, now, billed.tenant, crate::webhooks::WebhookKind::BillIssued, &message, data)
            .await?;
    }
    Ok(())
}
