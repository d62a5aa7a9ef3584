//! The ledger's storage: each [`Posting`] (balanced by construction in `nexus-money`) is one
//! row in `ledger_transactions` and its entries, written inside the caller's database
//! transaction so the ledger moves together with the charge or refund it records. Rows are
//! never updated or deleted (triggers refuse it on both backends; on PostgreSQL a trigger also
//! refuses, at the end of each statement writing entries, a transaction that does not
//! balance). [`verify`] recomputes every invariant from the entries.

use nexus_money::Currency;
pub use nexus_money::ledger::Account;
use nexus_money::ledger::{Entry, Posting};
use nexus_registry::db::{backend_of, value_rows};
use serde::Serialize;

use super::ids::{ChargeId, RefundId, TransactionId};
pub use crate::error::stored_currency;
use crate::error::{MarketError, storage};
use crate::market::Market;

/// Builds a posting from legs, leaving out zero legs.
pub fn posting(currency: Currency, legs: &[(Account, i64)]) -> Result<Posting, MarketError> {
    Posting::of_legs(currency, legs).map_err(super::money_error)
}

/// What a ledger transaction records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A charge billed to a tenant.
    Charge,
    /// A charge collected, and split between the platform and the partner.
    Collection,
    /// A refund (or a downgrade's credit), with the fee it returns.
    Refund,
    /// A payout leaving the partner's payable.
    Payout,
    /// A payout the provider confirmed: it leaves the platform's cash.
    PayoutPaid,
    /// A payout the provider rejected: the money returns to the partner's payable.
    PayoutReturned,
    /// An operator's correction of a partner's balance.
    Adjustment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Collection => "collection",
            Self::Refund => "refund",
            Self::Payout => "payout",
            Self::PayoutPaid => "payout-paid",
            Self::PayoutReturned => "payout-returned",
            Self::Adjustment => "adjustment",
        }
    }
}

/// A client's idempotency key and the hash of its request, stored with the transaction under
/// a unique constraint: the same key with another request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_sha256: String,
}

/// Everything about a transaction but its entries.
pub struct Head<'a> {
    pub kind: Kind,
    pub charge: Option<&'a ChargeId>,
    pub refund: Option<&'a RefundId>,
    pub payout: Option<&'a str>,
    pub adjustment: Option<&'a str>,
    pub idempotency: Option<&'a IdempotencyKey>,
    pub memo: String,
    pub at: i64,
}

impl<'a> Head<'a> {
    /// The head of a transaction that records `charge` (billing it, or collecting it).
    pub fn of_charge(kind: Kind, charge: &'a ChargeId, memo: String, at: i64) -> Self {
        Self { kind, charge: Some(charge), refund: None, payout: None, adjustment: None, idempotency: None, memo, at }
    }
}

/// Writes `posting` as one transaction on `conn` (inside the caller's database transaction),
/// with its rollups.
pub async fn post(
    conn: &mut sqlx::AnyConnection,
    head: Head<'_>,
    posting: &Posting,
) -> Result<TransactionId, MarketError> {
    let mut ids = post_many(conn, &[(head, posting)]).await?;
    ids.pop().ok_or_else(|| crate::error::storage("a posting was not written"))
}

/// Transactions written per multi-row statement (their legs, at most 5 each, go in one
/// statement too: 2,500 rows × 5 values stays under both backends' parameter limits).
const TRANSACTIONS_PER_STATEMENT: usize = 500;

/// Writes each posting as one transaction on `conn` (inside the caller's database
/// transaction), in order, and adds them to the money rollups (`rollups::apply`) in the same
/// database transaction: a handful of statements whatever the number of postings.
pub async fn post_many(
    conn: &mut sqlx::AnyConnection,
    postings: &[(Head<'_>, &Posting)],
) -> Result<Vec<TransactionId>, MarketError> {
    let ids = postings.iter().map(|_| TransactionId::random()).collect::<Result<Vec<_>, _>>()?;
    let mut seqs = std::collections::HashMap::with_capacity(ids.len());
    for (chunk, chunk_ids) in postings.chunks(TRANSACTIONS_PER_STATEMENT).zip(ids.chunks(TRANSACTIONS_PER_STATEMENT)) {
        insert_heads(conn, chunk, chunk_ids, &mut seqs).await?;
        insert_legs(conn, chunk, chunk_ids).await?;
    }
    let posted = postings
        .iter()
        .zip(&ids)
        .map(|((head, posting), id)| {
            let seq =
                seqs.get(id.as_str()).copied().ok_or_else(|| crate::error::storage("no seq for a transaction"))?;
            Ok(super::rollups::Posted {
                id: id.as_str(),
                seq,
                kind: head.kind,
                at: head.at,
                charge: head.charge.map(ChargeId::as_str),
                refund: head.refund.map(RefundId::as_str),
                payout: head.payout,
                adjustment: head.adjustment,
                posting,
            })
        })
        .collect::<Result<Vec<_>, MarketError>>()?;
    super::rollups::apply(conn, &posted).await?;
    Ok(ids)
}

/// The `ledger_transactions` rows of `chunk`, in one statement; each one's `seq` into `seqs`.
async fn insert_heads(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(Head<'_>, &Posting)],
    ids: &[TransactionId],
    seqs: &mut std::collections::HashMap<String, i64>,
) -> Result<(), MarketError> {
    let sql = backend_of(conn).positional(format!(
        "INSERT INTO ledger_transactions (id, kind, charge_id, refund_id, payout_id, adjustment_id, idempotency_key, \
         request_sha256, memo, posted_at) VALUES {} RETURNING id, seq",
        value_rows(chunk.len(), 10)
    ));
    let mut insert = sqlx::query_as::<_, (String, i64)>(&sql);
    for ((head, _), id) in chunk.iter().zip(ids) {
        insert = insert
            .bind(id.as_str())
            .bind(head.kind.as_str())
            .bind(head.charge.map(ChargeId::as_str))
            .bind(head.refund.map(RefundId::as_str))
            .bind(head.payout)
            .bind(head.adjustment)
            .bind(head.idempotency.map(|k| k.key.as_str()))
            .bind(head.idempotency.map(|k| k.request_sha256.as_str()))
            .bind(&head.memo)
            .bind(head.at);
    }
    for (id, seq) in insert.fetch_all(&mut *conn).await? {
        seqs.insert(id, seq);
    }
    Ok(())
}

/// Every leg of every transaction of `chunk`, in one statement: PostgreSQL checks at the end
/// of each statement that the transactions it wrote balance (migration 0038), so a
/// transaction's legs are never split between two statements.
async fn insert_legs(
    conn: &mut sqlx::AnyConnection,
    chunk: &[(Head<'_>, &Posting)],
    ids: &[TransactionId],
) -> Result<(), MarketError> {
    let legs: Vec<(&TransactionId, usize, &Entry)> = chunk
        .iter()
        .zip(ids)
        .flat_map(|((_, posting), id)| posting.entries().iter().enumerate().map(move |(leg, entry)| (id, leg, entry)))
        .collect();
    let sql = backend_of(conn).positional(format!(
        "INSERT INTO ledger_entries (transaction_id, leg, account, currency, amount_minor) VALUES {}",
        value_rows(legs.len(), 5)
    ));
    let mut insert = sqlx::query(&sql);
    for (id, leg, entry) in legs {
        insert = insert
            .bind(id.as_str())
            .bind(leg as i64)
            .bind(&entry.account)
            .bind(entry.amount.currency.code())
            .bind(entry.amount.minor);
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// The transaction an idempotency key was stored with: its id, its request hash and the
/// refund or adjustment it recorded.
pub async fn by_idempotency_key(
    conn: &mut sqlx::AnyConnection,
    key: &str,
) -> Result<Option<(TransactionId, String, Option<String>)>, MarketError> {
    let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, request_sha256, COALESCE(refund_id, adjustment_id) AS recorded FROM ledger_transactions \
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, request_sha256, recorded)) = row else { return Ok(None) };
    // The only writer stores a key with its request's hash: a key without one is a broken
    // row, an error rather than an empty hash (which would read as the key reused).
    let request_sha256 =
        request_sha256.ok_or_else(|| storage(format!("ledger transaction {id} has a key but no request hash")))?;
    Ok(Some((id.parse()?, request_sha256, recorded)))
}

/// An account's balance in a currency (debits positive).
pub async fn balance(market: &Market, account: &Account, currency: Currency) -> Result<i64, MarketError> {
    let sum: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount_minor) AS BIGINT) FROM ledger_entries WHERE account = $1 AND currency = $2",
    )
    .bind(account.name())
    .bind(currency.code())
    .fetch_one(&market.db.pool)
    .await?;
    Ok(sum.unwrap_or(0))
}

/// One transaction with its entries, as `GET /v1/ledger/transactions/...` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerTransaction {
    #[schema(value_type = String)]
    pub id: TransactionId,
    pub kind: String,
    pub charge: Option<String>,
    pub refund: Option<String>,
    pub memo: String,
    pub posted_at: i64,
    pub entries: Vec<LedgerEntry>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub account: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub amount_minor: i64,
}

/// The ledger transactions of one charge (its billing, collection and refunds), in order.
pub async fn of_charge(market: &Market, charge: &ChargeId) -> Result<Vec<LedgerTransaction>, MarketError> {
    let rows = sqlx::query_as::<_, EntryRow>(
        "SELECT t.id, t.kind, t.charge_id, t.refund_id, t.memo, t.posted_at, e.account, e.currency, e.amount_minor \
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.charge_id = $1 ORDER BY t.seq, e.leg",
    )
    .bind(charge.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    let mut out: Vec<LedgerTransaction> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|t| t.id != row.id) {
            out.push(LedgerTransaction {
                id: row.id,
                kind: row.kind,
                charge: row.charge_id,
                refund: row.refund_id,
                memo: row.memo,
                posted_at: row.posted_at,
                entries: Vec::new(),
            });
        }
        if let Some(last) = out.last_mut() {
            let currency = stored_currency(&row.currency)?;
            last.entries.push(LedgerEntry { account: row.account, currency, amount_minor: row.amount_minor });
        }
    }
    Ok(out)
}

/// A row [`of_charge`] reads: a transaction's columns beside one of its entries.
#[derive(sqlx::FromRow)]
struct EntryRow {
    id: TransactionId,
    kind: String,
    charge_id: Option<String>,
    refund_id: Option<String>,
    memo: String,
    posted_at: i64,
    account: String,
    currency: String,
    amount_minor: i64,
}

mod verify;

pub use verify::{Check, LedgerReport, verify};
