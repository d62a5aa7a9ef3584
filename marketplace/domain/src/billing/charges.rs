//! Charges: one line of what a tenant owes, unique by install, line and period start. A
//! charge and the ledger transaction that bills it are written in one database transaction;
//! inserting one that exists already does nothing, so billing again (a re-run, another node,
//! a restart after a crash) never charges twice.

mod write;

use std::fmt;
use std::str::FromStr;

use nexus_money::Currency;
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use sqlx::any::AnyRow;

use super::ids::ChargeId;
use super::plans::Plan;
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::error::{MarketError, Page, PageQuery, storage};
use crate::market::Market;

pub use self::write::{Billed, NewCharge, insert, insert_many};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChargeStatus {
    /// Rated at zero (usage within the included units): nothing to collect.
    NothingDue,
    /// Waiting for its first collection attempt.
    Pending,
    /// An attempt is under way, or its outcome is not known yet.
    Collecting,
    Collected,
    /// The last attempt was declined; retried on schedule or when the tenant settles.
    Failed,
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NothingDue => "nothing-due",
            Self::Pending => "pending",
            Self::Collecting => "collecting",
            Self::Collected => "collected",
            Self::Failed => "failed",
        }
    }

    /// A status as stored: anything else is a storage error, never a default.
    pub(crate) fn stored(status: &str) -> Result<Self, MarketError> {
        status.parse().map_err(|_| storage("stored charge status"))
    }
}

impl FromStr for ChargeStatus {
    type Err = MarketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::NothingDue, Self::Pending, Self::Collecting, Self::Collected, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                MarketError::invalid(
                    ErrorCode::InvalidQuery,
                    format!("unknown charge status `{s}` (nothing-due, pending, collecting, collected, failed)"),
                )
            })
    }
}

impl fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a charge has its amount: everything needed to recompute it by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChargeDetail {
    pub plan_key: String,
    pub plan_revision: i64,
    pub plan_name: String,
    pub model: String,
    /// The plan's full price for the line (one-time price or the period's base fee).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_minor: Option<i64>,
    /// A prorated line: the billing period it is part of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prorated_of: Option<(i64, i64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_reported: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_included: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_billable: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_minor: Option<i64>,
    /// The cap, when it lowered the amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_applied_minor: Option<i64>,
}

impl ChargeDetail {
    pub fn of(plan: &Plan) -> Self {
        Self {
            plan_key: plan.key.clone(),
            plan_revision: plan.revision,
            plan_name: plan.name.clone(),
            model: plan.model.as_str().into(),
            ..Self::default()
        }
    }
}

/// A charge as tenants and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Charge {
    #[schema(value_type = String)]
    pub id: ChargeId,
    pub install: String,
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub plugin: String,
    pub publisher: String,
    pub plan: String,
    /// `one-time`, `subscription`, `proration` or `usage:<meter>`.
    pub line: String,
    pub period_start: i64,
    pub period_end: i64,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub amount_minor: i64,
    pub status: ChargeStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    /// The platform's fee, fixed when collected.
    pub fee_minor: Option<i64>,
    pub refunded_minor: i64,
    pub detail: ChargeDetail,
    pub created_at: i64,
    pub collected_at: Option<i64>,
}

pub(crate) const COLUMNS: &str = "id, install_id, tenant_id, plugin_id, publisher, plan_id, line, period_start, \
    period_end, currency, amount_minor, status, attempts, next_attempt_at, fee_minor, refunded_minor, detail, \
    created_at, collected_at";

/// A row of [`COLUMNS`], as stored: its status and detail still text.
#[derive(sqlx::FromRow)]
pub(crate) struct ChargeRow {
    id: ChargeId,
    install_id: String,
    tenant_id: TenantId,
    plugin_id: String,
    publisher: String,
    plan_id: String,
    line: String,
    period_start: i64,
    period_end: i64,
    currency: String,
    amount_minor: i64,
    status: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    fee_minor: Option<i64>,
    refunded_minor: i64,
    detail: String,
    created_at: i64,
    collected_at: Option<i64>,
}

impl TryFrom<ChargeRow> for Charge {
    type Error = MarketError;

    fn try_from(row: ChargeRow) -> Result<Self, MarketError> {
        Ok(Charge {
            id: row.id,
            install: row.install_id,
            tenant: row.tenant_id,
            plugin: row.plugin_id,
            publisher: row.publisher,
            plan: row.plan_id,
            line: row.line,
            period_start: row.period_start,
            period_end: row.period_end,
            currency: super::ledger::stored_currency(&row.currency)?,
            amount_minor: row.amount_minor,
            status: ChargeStatus::stored(&row.status)?,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            fee_minor: row.fee_minor,
            refunded_minor: row.refunded_minor,
            detail: serde_json::from_str(&row.detail).map_err(|e| storage(format!("stored charge detail: {e}")))?,
            created_at: row.created_at,
            collected_at: row.collected_at,
        })
    }
}

/// The charge of a row of [`COLUMNS`] read with `sqlx::query` (the month's bill in `views.rs`).
pub(crate) fn charge(row: &AnyRow) -> Result<Charge, MarketError> {
    ChargeRow::from_row(row)?.try_into()
}

/// The charge, if the caller may see it: its tenant (with `read`) or an operator. Another
/// tenant's charge is reported as not found.
pub async fn get(market: &Market, caller: &Caller, id: &ChargeId) -> Result<Charge, MarketError> {
    let charge = unchecked(market, id).await?;
    match caller {
        Caller::Operator { .. } => Ok(charge),
        Caller::Tenant { .. } if *caller.tenant(TenantScope::Read)? == charge.tenant => Ok(charge),
        Caller::Tenant { .. } => Err(MarketError::NotFound(format!("charge {id}"))),
        Caller::Publisher(_) => Err(MarketError::Forbidden(
            "charges belong to tenants; partners see their sales at /v1/publishers/{publisher}/sales".into(),
        )),
    }
}

async fn unchecked(market: &Market, id: &ChargeId) -> Result<Charge, MarketError> {
    sqlx::query_as::<_, ChargeRow>(&format!("SELECT {COLUMNS} FROM charges WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("charge {id}")))?
        .try_into()
}

/// Filters of `GET /v1/charges`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChargeQuery {
    /// Operators may name a tenant; tenants see their own.
    pub tenant: Option<String>,
    pub install: Option<String>,
    pub status: Option<String>,
    /// 1-based, default 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// The tenant the caller reads for: its own, or (operators) the one named, or all.
pub(crate) fn reader_tenant(caller: &Caller, named: Option<&str>) -> Result<Option<TenantId>, MarketError> {
    match caller {
        Caller::Operator { .. } => named.map(str::parse).transpose(),
        Caller::Tenant { .. } => {
            let own = caller.tenant(TenantScope::Read)?;
            match named {
                Some(named) if named != own.as_str() => Err(MarketError::NotFound(format!("tenant {named}"))),
                _ => Ok(Some(own.clone())),
            }
        }
        Caller::Publisher(_) => Err(MarketError::Forbidden(
            "charges belong to tenants; partners see their sales at /v1/publishers/{publisher}/sales".into(),
        )),
    }
}

/// Charges, newest first.
pub async fn list(market: &Market, caller: &Caller, query: &ChargeQuery) -> Result<Page<Charge>, MarketError> {
    let (page, per_page) = PageQuery { page: query.page, per_page: query.per_page }.checked()?;
    let tenant = reader_tenant(caller, query.tenant.as_deref())?;
    let status = query.status.as_deref().map(ChargeStatus::from_str).transpose()?;
    let filter =
        "WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR install_id = $2) AND ($3 IS NULL OR status = $3)";
    let (tenant, status) = (tenant.map(String::from), status.map(|s| s.as_str()));
    let count = format!("SELECT COUNT(*) FROM charges {filter}");
    let total: i64 = sqlx::query_scalar(&count)
        .bind(tenant.clone())
        .bind(query.install.clone())
        .bind(status)
        .fetch_one(&market.db.pool)
        .await?;
    let select = format!(
        "SELECT {COLUMNS} FROM charges {filter} ORDER BY created_at DESC, id DESC LIMIT {per_page} OFFSET {}",
        u64::from(page - 1) * u64::from(per_page)
    );
    let rows = sqlx::query_as::<_, ChargeRow>(&select)
        .bind(tenant)
        .bind(query.install.clone())
        .bind(status)
        .fetch_all(&market.db.pool)
        .await?;
    let items = rows.into_iter().map(Charge::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, page, per_page, total))
}

/// One invocation behind a usage line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct UsageSource {
    #[sqlx(rename = "id")]
    pub invocation: String,
    pub event_id: String,
    pub started_at: i64,
    pub units: i64,
}

/// The applied invocations a usage line counted, oldest first (its tenant, its partner,
/// operators).
pub async fn usage_sources(
    market: &Market,
    caller: &Caller,
    id: &ChargeId,
    query: &PageQuery,
) -> Result<Page<UsageSource>, MarketError> {
    // The charge's partner may see what its usage line counted (invocation and event ids,
    // units: no tenant payloads), to trace its statement; another partner sees nothing.
    let charge = match caller {
        Caller::Publisher(credential) => {
            let charge = unchecked(market, id).await?;
            if charge.publisher != credential.publisher.as_str() {
                return Err(MarketError::NotFound(format!("charge {id}")));
            }
            charge
        }
        _ => get(market, caller, id).await?,
    };
    let (page, per_page) = query.checked()?;
    // Only usage lines count invocations; any other line has none behind it.
    let Some(meter) = charge.line.strip_prefix("usage:") else { return Ok(Page::new(Vec::new(), page, per_page, 0)) };
    let from = "FROM invocations i JOIN invocation_usage u ON u.invocation_id = i.id \
                WHERE i.install_id = $1 AND u.meter = $2 AND i.outcome = 'ok' AND i.started_at >= $3 AND i.started_at < $4";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {from}"))
        .bind(&charge.install)
        .bind(meter)
        .bind(charge.period_start)
        .bind(charge.period_end)
        .fetch_one(&market.db.pool)
        .await?;
    let items = sqlx::query_as::<_, UsageSource>(&format!(
        "SELECT i.id, i.event_id, i.started_at, u.units {from} ORDER BY i.started_at, i.id LIMIT {per_page} OFFSET {}",
        u64::from(page - 1) * u64::from(per_page)
    ))
    .bind(&charge.install)
    .bind(meter)
    .bind(charge.period_start)
    .bind(charge.period_end)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(Page::new(items, page, per_page, total))
}
