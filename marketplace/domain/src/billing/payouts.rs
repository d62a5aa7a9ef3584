//! Payouts: a run pays every partner whose payable balance in a currency is at least the
//! currency's minimum (25 whole units unless an operator set another), and carries smaller
//! balances forward. It runs on a schedule in `nexus serve` (twice monthly by default, like
//! app stores; or monthly) and by hand (`POST /v1/payouts/runs`, `nexus payouts run`).
//!
//! Exactly once: a payout is unique by partner, currency and payout period, and is written
//! `pending` together with the ledger transaction that takes its amount out of the partner's
//! payable, under the lock every movement of that payable takes; only then is the
//! [`PayoutProvider`] called, with the payout's id as the idempotency key. `paid` moves the
//! amount out of the platform's cash; `failed` returns it to the payable. A payout whose
//! outcome is unknown (a timeout, a node killed during the call) is resolved by asking the
//! provider about its key, never by paying again; if the provider never received it, the
//! same key is sent again, which cannot pay twice.
//!
//! Each payout lists the statement lines it settles: the partner's transactions since the
//! previous payout, so opening (carried) + sales − fees − refunds ± adjustments = paid.

mod batch;
mod history;
mod outlook;
mod scheduled;

pub use history::{detail, list};
pub use outlook::{NextPayout, NextState, outlook};
pub use scheduled::{SCHEDULED_ACTOR, keep_paying, scheduled_run};

use std::collections::BTreeMap;

use nexus_money::Currency;
use nexus_money::period;
use serde::{Deserialize, Serialize};

pub use super::adjustments::{Adjustment, AdjustmentRequest, adjust};
pub(crate) use super::holds::known_publisher;
pub use super::holds::{HoldRequest, MinimumRequest, hold, minimum, release, set_minimum};
use super::money_error;
use super::provider::Outcome;
use super::statements::{StatementLine, Totals};
use crate::accounts::Caller;
use crate::error::{MarketError, storage};
use crate::market::Market;

/// When payout periods turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The 1st–15th and the 16th–end of each month (Shopify's rhythm).
    #[default]
    TwiceMonthly,
    Monthly,
}

impl Schedule {
    /// The payout period `at` falls in: `2026-11-1` / `2026-11-2`, or `2026-11`.
    pub fn period(self, at: i64) -> String {
        let month = period::month_label(at);
        match self {
            Self::Monthly => month,
            Self::TwiceMonthly => {
                let (_, _, day) = period::civil(at);
                format!("{month}-{}", if day <= 15 { 1 } else { 2 })
            }
        }
    }
}

impl Schedule {
    /// When the payout period after the one `at` falls in starts: the 16th or the 1st.
    pub fn next_period_start(self, at: i64) -> Result<i64, MarketError> {
        let month = period::parse_month(&period::month_label(at)).map_err(money_error)?;
        let (_, _, day) = period::civil(at);
        Ok(match self {
            Self::TwiceMonthly if day <= 15 => month.start_ms + 15 * period::MS_PER_DAY,
            Self::TwiceMonthly | Self::Monthly => month.end_ms,
        })
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "twice-monthly" => Ok(Self::TwiceMonthly),
            "monthly" => Ok(Self::Monthly),
            other => Err(format!("unknown payout schedule `{other}` (twice-monthly or monthly)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PayoutStatus {
    /// Out of the partner's payable; the provider has not confirmed it yet.
    Pending,
    Paid,
    /// Rejected by the provider; the money is back in the partner's payable.
    Failed,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
        }
    }

    fn stored(text: &str) -> Result<Self, MarketError> {
        [Self::Pending, Self::Paid, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| storage(format!("stored payout status `{text}`")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Payout {
    #[schema(value_type = String)]
    pub id: crate::ids::PayoutId,
    pub publisher: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// The payout period (`2026-11-2`, or `2026-11` on a monthly schedule).
    pub period: String,
    pub amount_minor: i64,
    pub status: PayoutStatus,
    /// The balance carried from before the lines this payout settles.
    pub carried_minor: i64,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A payout with the statement lines it settles and how they add up to it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutDetail {
    pub payout: Payout,
    /// carried (opening) + sales − fees − refunds + fees returned + adjustments − earlier
    /// payouts = paid (closing).
    pub reconciliation: Totals,
    pub lines: Vec<StatementLine>,
}

/// What a payout run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayoutRunReport {
    pub at: i64,
    pub period: String,
    /// Payouts the provider confirmed in this run (new ones and earlier unknown ones).
    pub paid: u64,
    pub failed: u64,
    /// Payouts whose outcome is not known yet (resolved by a later run).
    pub pending: u64,
    /// Amount paid out, by currency.
    pub paid_minor: BTreeMap<String, i64>,
    /// Balances under their currency's minimum, left for a later run.
    pub carried_forward: Vec<Carried>,
    /// Partners on hold, not paid.
    pub held: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Carried {
    pub publisher: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub balance_minor: i64,
    pub minimum_minor: i64,
}

/// How long a node may hold a payout it is paying before another asks the provider.
const CLAIM_MS: i64 = 60_000;

const COLUMNS: &str = "id, publisher, currency, period_key, amount_minor, status, carried_minor, \
                       provider_reference, failure_reason, created_at, finished_at";

/// A row of [`COLUMNS`], as stored.
#[derive(sqlx::FromRow)]
struct PayoutRow {
    id: crate::ids::PayoutId,
    publisher: String,
    currency: String,
    period_key: String,
    amount_minor: i64,
    status: String,
    carried_minor: i64,
    provider_reference: Option<String>,
    failure_reason: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<PayoutRow> for Payout {
    type Error = MarketError;

    fn try_from(row: PayoutRow) -> Result<Self, MarketError> {
        Ok(Payout {
            id: row.id,
            publisher: row.publisher,
            currency: super::ledger::stored_currency(&row.currency)?,
            period: row.period_key,
            amount_minor: row.amount_minor,
            status: PayoutStatus::stored(&row.status)?,
            carried_minor: row.carried_minor,
            provider_reference: row.provider_reference,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
            finished_at: row.finished_at,
        })
    }
}

/// `POST /v1/payouts/runs`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutRunRequest {}

/// Runs payouts now (operators).
pub async fn run_for(market: &Market, caller: &Caller) -> Result<PayoutRunReport, MarketError> {
    caller.require_operator()?;
    let report = run(market, market.billing.clock.now_ms()).await?;
    let detail = serde_json::to_value(&report).map_err(storage)?;
    crate::audit::record(market.db.writer(), &caller.actor(), "payouts.run", &report.period, detail).await?;
    Ok(report)
}

/// Partners paid per database transaction (see [`batch`]).
const BATCH: usize = 100;

/// Resolves payouts left pending, then pays every partner and currency due in the period of
/// `at`. Who is due comes from the running balances (`partner_balances`, one row per partner
/// and currency), and only partners due are locked and written, a batch at a time: a run
/// costs the same however long the ledger, and next to nothing when nobody is due.
pub async fn run(market: &Market, at: i64) -> Result<PayoutRunReport, MarketError> {
    let period = market.billing.payout_schedule.period(at);
    let mut report = PayoutRunReport { at, period: period.clone(), ..PayoutRunReport::default() };
    let unresolved: Vec<String> =
        sqlx::query_scalar("SELECT id FROM payouts WHERE status = 'pending' AND claimed_until <= $1 ORDER BY id")
            .bind(at)
            .fetch_all(&market.db.pool)
            .await?;
    for id in unresolved {
        tally(&mut report, settle(market, &id, at, true).await?);
    }
    let (due, minimums) = due(market, &period, &mut report).await?;
    for batch in due.chunks(BATCH) {
        let (opened, carried) = batch::open(market, batch, &minimums, &period, at).await?;
        report.carried_forward.extend(carried);
        let mut answers = Vec::with_capacity(opened.len());
        for payout in opened {
            match batch::ask(market, &payout, false).await? {
                Ok(Outcome::Succeeded { reference }) => answers.push((payout, Ok(reference))),
                Ok(Outcome::Refused { reason }) => answers.push((payout, Err(reason))),
                Err(error) => tally(&mut report, unknown(market, &payout, &error, at).await?),
            }
        }
        let concluded = batch::conclude(market, &answers, at).await?;
        for (concluded, (payout, _)) in concluded.into_iter().zip(&answers) {
            tally(&mut report, settled(concluded, payout));
        }
    }
    market.runner.metrics.record_payouts(report.paid, report.failed);
    Ok(report)
}

/// The partners and currencies due in `period` (positive balance, not on hold, not paid in
/// the period, at or over the currency's minimum), in the order of their payable accounts;
/// notes the others in `report`. Read without locks: [`batch::open`] checks again under them.
async fn due(
    market: &Market,
    period: &str,
    report: &mut PayoutRunReport,
) -> Result<(Vec<batch::Due>, BTreeMap<String, i64>), MarketError> {
    let mut conn = market.db.pool.acquire().await?;
    let held: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT publisher FROM payout_holds WHERE released_at IS NULL ORDER BY publisher")
            .fetch_all(&mut *conn)
            .await?;
    let balances = sqlx::query_as::<_, (String, String, i64, i64)>(
        "SELECT b.publisher, b.currency, b.payable_minor, (SELECT COUNT(*) FROM payouts p WHERE \
         p.publisher = b.publisher AND p.currency = b.currency AND p.period_key = $1) AS done \
         FROM partner_balances b WHERE b.payable_minor > 0 ORDER BY 'partner:' || b.publisher || ':payable', b.currency",
    )
    .bind(period)
    .fetch_all(&mut *conn)
    .await?;
    let (mut due, mut minimums) = (Vec::new(), BTreeMap::new());
    for (publisher, code, balance, done) in balances {
        if held.contains(&publisher) {
            if !report.held.contains(&publisher) {
                report.held.push(publisher);
            }
            continue;
        }
        if done > 0 {
            continue;
        }
        let currency = super::ledger::stored_currency(&code)?;
        let minimum_minor = match minimums.get(&code) {
            Some(minimum) => *minimum,
            None => *minimums.entry(code.clone()).or_insert(minimum(&mut conn, currency).await?),
        };
        if balance < minimum_minor {
            report.carried_forward.push(Carried { publisher, currency, balance_minor: balance, minimum_minor });
            continue;
        }
        due.push((publisher, currency));
    }
    Ok((due, minimums))
}

fn tally(report: &mut PayoutRunReport, settled: Settled) {
    match settled {
        Settled::Paid(currency, amount) => {
            report.paid += 1;
            *report.paid_minor.entry(currency.code().to_string()).or_default() += amount;
        }
        Settled::Failed => report.failed += 1,
        Settled::Unknown => report.pending += 1,
        Settled::Skipped => {}
    }
}

enum Settled {
    Paid(Currency, i64),
    Failed,
    Unknown,
    Skipped,
}

fn settled(concluded: batch::Concluded, payout: &Payout) -> Settled {
    match concluded {
        batch::Concluded::Paid => Settled::Paid(payout.currency, payout.amount_minor),
        batch::Concluded::Failed => Settled::Failed,
        batch::Concluded::Skipped => Settled::Skipped,
    }
}

/// The provider did not answer: the payout stays pending, for the next run to ask about.
async fn unknown(
    market: &Market,
    payout: &Payout,
    error: &super::provider::ProviderError,
    at: i64,
) -> Result<Settled, MarketError> {
    tracing::warn!(payout = %payout.id, %error, "payout outcome unknown; the next run asks the provider");
    sqlx::query("UPDATE payouts SET claimed_until = $2 WHERE id = $1 AND status = 'pending'")
        .bind(&payout.id)
        .bind(at)
        .execute(market.db.writer())
        .await?;
    Ok(Settled::Unknown)
}

/// Asks the provider to pay a pending payout (or, `resolve`, what became of it) and records
/// the outcome.
async fn settle(market: &Market, id: &str, at: i64, resolve: bool) -> Result<Settled, MarketError> {
    let row = sqlx::query_as::<_, PayoutRow>(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1"))
        .bind(id)
        .fetch_one(&market.db.pool)
        .await?;
    let payout = Payout::try_from(row)?;
    if payout.status != PayoutStatus::Pending {
        return Ok(Settled::Skipped);
    }
    let outcome = match batch::ask(market, &payout, resolve).await? {
        Ok(Outcome::Succeeded { reference }) => Ok(reference),
        Ok(Outcome::Refused { reason }) => Err(reason),
        Err(error) => return unknown(market, &payout, &error, at).await,
    };
    let answers = [(payout, outcome)];
    let concluded = batch::conclude(market, &answers, at).await?;
    Ok(concluded.into_iter().next().map_or(Settled::Skipped, |c| settled(c, &answers[0].0)))
}
