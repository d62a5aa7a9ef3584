//! An install's billing columns (its plan revision, anchor, trial, what is paid and billed,
//! when it is next due), read under the row lock and written only from here. What they
//! become is decided in `billing::schedule` (pure); billing runs, plan changes and new
//! installs read them with [`lock`] or [`lock_many`], decide, and [`save`] or [`save_many`];
//! an uninstall ends the schedule with [`stop`].

use nexus_registry::db::{backend_of, for_update};

use super::{InstallStatus, PauseCause};
use crate::accounts::TenantId;
use crate::error::MarketError;
use crate::ids::{InstallId, PlanId};

/// The billing columns of one install.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct BillingState {
    /// The plan revision it pays; `None` before billing bound it (its plugin offers none).
    pub plan_id: Option<String>,
    /// Where its periods are counted from: the install, the end of its trial, or the last
    /// change that started a new period.
    #[sqlx(rename = "billing_anchor")]
    pub anchor: Option<i64>,
    pub trial_ends_at: Option<i64>,
    /// Base fees are charged up to here (in advance).
    pub paid_through: Option<i64>,
    /// Usage is billed up to here (in arrears).
    pub usage_billed_until: Option<i64>,
    /// When something is next due; `None` when nothing ever will be.
    pub next_bill_at: Option<i64>,
}

/// The install's billing state under its row lock (PostgreSQL; SQLite's write transaction
/// is the lock).
pub async fn lock(conn: &mut sqlx::AnyConnection, install: &str) -> Result<BillingState, MarketError> {
    let lock = for_update(backend_of(conn));
    read(conn, install, lock).await
}

/// The install's billing state, read without a lock (a preview).
pub async fn load(conn: &mut sqlx::AnyConnection, install: &str) -> Result<BillingState, MarketError> {
    read(conn, install, "").await
}

async fn read(conn: &mut sqlx::AnyConnection, install: &str, lock: &str) -> Result<BillingState, MarketError> {
    Ok(sqlx::query_as::<_, BillingState>(&format!(
        "SELECT plan_id, billing_anchor, trial_ends_at, paid_through, usage_billed_until, next_bill_at \
         FROM installs WHERE id = $1{lock}"
    ))
    .bind(install)
    .fetch_one(&mut *conn)
    .await?)
}

/// Ends the install's schedule at `now`, in the uninstall's transaction: usage not yet billed
/// is due at once (its final segment ends here); nothing is due after that.
pub async fn stop(conn: &mut sqlx::AnyConnection, install: &str, now: i64) -> Result<(), MarketError> {
    sqlx::query(
        "UPDATE installs SET \
         next_bill_at = CASE WHEN usage_billed_until IS NOT NULL AND usage_billed_until < $1 THEN $1 ELSE NULL END \
         WHERE id = $2",
    )
    .bind(now)
    .bind(install)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes all of `state`, with the key of its plan (`plan_key`) and, when given, the
/// install's `updated_at` (a change the tenant made; a new install has it already).
pub async fn save(
    conn: &mut sqlx::AnyConnection,
    install: &str,
    state: &BillingState,
    plan_key: &str,
    updated_at: Option<i64>,
) -> Result<(), MarketError> {
    let touch = if updated_at.is_some() { ", updated_at = $9" } else { "" };
    let sql = format!(
        "UPDATE installs SET plan_id = $2, plan = $3, billing_anchor = $4, trial_ends_at = $5, paid_through = $6, \
         usage_billed_until = $7, next_bill_at = $8{touch} WHERE id = $1"
    );
    let query = sqlx::query(&sql)
        .bind(install)
        .bind(state.plan_id.as_deref())
        .bind(plan_key)
        .bind(state.anchor)
        .bind(state.trial_ends_at)
        .bind(state.paid_through)
        .bind(state.usage_billed_until)
        .bind(state.next_bill_at);
    let query = match updated_at {
        Some(at) => query.bind(at),
        None => query,
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Binds an install made before billing existed to `plan_id` (`plan_key`), paying from
/// `now`; an install already bound is left as it is.
pub async fn bind_unbilled<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    install: &str,
    plan_id: &str,
    plan_key: &str,
    now: i64,
) -> Result<(), MarketError> {
    sqlx::query(
        "UPDATE installs SET plan_id = $2, plan = $3, billing_anchor = $4, paid_through = $4, \
         usage_billed_until = $4 WHERE id = $1 AND plan_id IS NULL",
    )
    .bind(install)
    .bind(plan_id)
    .bind(plan_key)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Rows locked or written per statement by [`lock_many`] and [`save_many`]: a billing run's
/// batch in one statement.
pub const ROWS_PER_STATEMENT: usize = 250;

/// An install as a billing run reads it under its row lock: who is billed, whether it is
/// live, and its billing state.
pub struct Billable {
    pub id: InstallId,
    pub tenant: TenantId,
    pub plugin: String,
    pub plan_id: PlanId,
    pub status: InstallStatus,
    pub paused_for: Option<PauseCause>,
    pub anchor: Option<i64>,
    pub paid_through: Option<i64>,
    pub usage_billed_until: Option<i64>,
    pub uninstalled_at: Option<i64>,
}

/// A row of [`lock_many`], as stored.
#[derive(sqlx::FromRow)]
struct BillableRow {
    id: InstallId,
    tenant_id: TenantId,
    plugin_id: String,
    plan_id: Option<PlanId>,
    status: String,
    paused_for: Option<String>,
    billing_anchor: Option<i64>,
    paid_through: Option<i64>,
    usage_billed_until: Option<i64>,
    uninstalled_at: Option<i64>,
}

impl BillableRow {
    /// The install, unless it has no plan.
    fn billable(self) -> Result<Option<Billable>, MarketError> {
        let Some(plan_id) = self.plan_id else { return Ok(None) };
        Ok(Some(Billable {
            id: self.id,
            tenant: self.tenant_id,
            plugin: self.plugin_id,
            plan_id,
            status: InstallStatus::stored(&self.status)?,
            paused_for: self.paused_for.as_deref().map(PauseCause::stored).transpose()?,
            anchor: self.billing_anchor,
            paid_through: self.paid_through,
            usage_billed_until: self.usage_billed_until,
            uninstalled_at: self.uninstalled_at,
        }))
    }
}

/// Locks the rows of `installs` (on PostgreSQL, in id order, so that two batches never wait
/// for each other in a cycle) and reads them: installs without a plan (or gone) are left out.
pub async fn lock_many(conn: &mut sqlx::AnyConnection, installs: &[String]) -> Result<Vec<Billable>, MarketError> {
    let mut ids: Vec<&str> = installs.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    let (backend, mut out) = (backend_of(conn), Vec::with_capacity(ids.len()));
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = backend.positional(format!(
            "SELECT id, tenant_id, plugin_id, plan_id, status, paused_for, billing_anchor, paid_through, \
             usage_billed_until, uninstalled_at FROM installs WHERE id IN ({}) ORDER BY id{}",
            placeholders.join(", "),
            for_update(backend)
        ));
        let mut query = sqlx::query_as::<_, BillableRow>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.extend(row.billable()?);
        }
    }
    Ok(out)
}

/// What a billing run moved forward for one install.
pub struct Advanced<'a> {
    pub install: &'a str,
    pub paid_through: Option<i64>,
    pub usage_billed_until: Option<i64>,
    pub next_bill_at: Option<i64>,
}

/// Writes what a billing run moved forward (paid through, usage billed until, next bill at)
/// in one statement per [`ROWS_PER_STATEMENT`] installs.
pub async fn save_many(conn: &mut sqlx::AnyConnection, rows: &[Advanced<'_>]) -> Result<(), MarketError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| format!("(${}, ${}, ${}, ${})", row * 4 + 1, row * 4 + 2, row * 4 + 3, row * 4 + 4))
            .collect();
        let sql = backend_of(conn).positional(format!(
            "WITH v (id, paid_through, usage_billed_until, next_bill_at) AS (VALUES {}) \
             UPDATE installs SET paid_through = v.paid_through, usage_billed_until = v.usage_billed_until, \
             next_bill_at = v.next_bill_at FROM v WHERE installs.id = v.id",
            values.join(", ")
        ));
        let mut query = sqlx::query(&sql);
        for done in chunk {
            query =
                query.bind(done.install).bind(done.paid_through).bind(done.usage_billed_until).bind(done.next_bill_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
