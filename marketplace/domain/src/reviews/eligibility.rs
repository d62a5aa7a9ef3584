//! Who may review: an organization that has run the plugin for a day.

use nexus_registry::ErrorCode;

use super::MIN_INSTALLED_MS;
use crate::accounts::TenantId;
use crate::error::MarketError;
use crate::market::Market;

/// An install of the plugin by the tenant, as [`reviewable_version`] reads it; `ran` is 1
/// when it has run an event (an integer on both backends).
#[derive(sqlx::FromRow)]
struct InstallSpan {
    version: String,
    created_at: i64,
    uninstalled_at: Option<i64>,
    status: String,
    ran: i64,
}

/// The version a tenant may review `plugin` at, or why it may not review it yet.
pub(super) async fn reviewable_version(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    plugin: &str,
    now: i64,
) -> Result<String, MarketError> {
    let rows = sqlx::query_as::<_, InstallSpan>(
        "SELECT i.version, i.created_at, i.uninstalled_at, i.status, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM invocations v WHERE v.install_id = i.id AND v.outcome = 'ok') \
         THEN 1 ELSE 0 END AS BIGINT) AS ran \
         FROM installs i WHERE i.tenant_id = $1 AND i.plugin_id = $2 ORDER BY i.created_at DESC",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(MarketError::invalid(
            ErrorCode::ReviewNotAllowed,
            format!("{tenant} has never installed {plugin}; only organizations that use a plugin may review it"),
        ));
    }
    let mut first_eligible_at = None;
    let mut ran_any = false;
    for InstallSpan { version, created_at, uninstalled_at, status, ran } in rows {
        let until = uninstalled_at.unwrap_or(now);
        let ran = ran != 0;
        ran_any |= ran;
        if ran && until - created_at >= MIN_INSTALLED_MS {
            return Ok(version);
        }
        if status != "uninstalled" {
            first_eligible_at = Some(created_at + MIN_INSTALLED_MS);
        }
    }
    let why = match (ran_any, first_eligible_at) {
        (false, _) => format!("{plugin} has not yet run an event for {tenant}; review it once it has done its work"),
        (true, Some(at)) => format!(
            "{tenant} installed {plugin} less than a day ago; reviews open a day after installing, at {}",
            crate::timestamps::iso(at)
        ),
        (true, None) => format!("{tenant} had {plugin} installed for less than a day"),
    };
    Err(MarketError::invalid(ErrorCode::ReviewNotAllowed, why))
}

/// Why `tenant` may not review `plugin` now, if it may not (for the listing page, which
/// shows it in place of the form).
pub async fn why_not(market: &Market, tenant: &TenantId, plugin: &str) -> Result<Option<String>, MarketError> {
    let db = &market.db;
    let mut conn = db.pool.acquire().await?;
    match reviewable_version(&mut conn, tenant, plugin, market.billing.clock.now_ms()).await {
        Ok(_) => Ok(None),
        Err(MarketError::Invalid { code: ErrorCode::ReviewNotAllowed, message }) => Ok(Some(message)),
        Err(other) => Err(other),
    }
}
