//! Figures over invocation records: how each version of a plugin and each install is doing.

use std::collections::BTreeMap;

use nexus_registry::PluginId;
use serde::Serialize;

use crate::error::{MarketError, storage};
use crate::installs;
use crate::market::Market;

/// How one version of a plugin is doing, over every install: figures only, never a
/// tenant's payload, data or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionHealth {
    pub version: String,
    pub invocations: i64,
    pub ok: i64,
    /// Failed invocations by outcome code (`plugin_error`, `panicked`, `limit_exceeded`, ...).
    pub errors: BTreeMap<String, i64>,
    /// Failed / all, in basis points (10000 = every one failed).
    pub error_rate_bp: i64,
    pub mean_duration_us: i64,
    /// Installs that ran this version at least once.
    pub installs: i64,
    pub last_at: Option<i64>,
}

/// How many times each of a publisher's plugins ran since `since`, in one query: plugins
/// that did not run are absent.
pub async fn invocations_by_plugin(
    market: &Market,
    publisher: &str,
    since: i64,
) -> Result<BTreeMap<PluginId, i64>, MarketError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT i.plugin_id, COUNT(*) FROM invocations i JOIN listings l ON l.plugin_id = i.plugin_id \
         WHERE l.publisher = $1 AND i.started_at >= $2 GROUP BY i.plugin_id",
    )
    .bind(publisher)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter()
        .map(|(plugin, count)| Ok((plugin.parse().map_err(|e| storage(format!("stored plugin id: {e}")))?, count)))
        .collect()
}

/// [`VersionHealth`] of every version of `plugin` with invocations since `since` (ms),
/// newest version first.
pub async fn version_health(market: &Market, plugin: &str, since: i64) -> Result<Vec<VersionHealth>, MarketError> {
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT version, outcome, COUNT(*), CAST(COALESCE(SUM(duration_us), 0) AS BIGINT), MAX(started_at) \
         FROM invocations WHERE plugin_id = $1 AND started_at >= $2 GROUP BY version, outcome",
    )
    .bind(plugin)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    let installs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT version, COUNT(DISTINCT install_id) FROM invocations WHERE plugin_id = $1 AND started_at >= $2 \
         GROUP BY version",
    )
    .bind(plugin)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(versions_of(rows, installs))
}

/// The health of each version from its rows per outcome `(version, outcome, count, sum of
/// durations, last start)` and its install counts `(version, installs)`, newest version first.
fn versions_of(rows: Vec<(String, String, i64, i64, i64)>, installs: Vec<(String, i64)>) -> Vec<VersionHealth> {
    let mut by_version: BTreeMap<String, (VersionHealth, i64)> = BTreeMap::new();
    for (version, outcome, count, duration_sum, last_at) in rows {
        let (health, durations) = by_version.entry(version.clone()).or_insert_with(|| {
            let health = VersionHealth {
                version,
                invocations: 0,
                ok: 0,
                errors: BTreeMap::new(),
                error_rate_bp: 0,
                mean_duration_us: 0,
                installs: 0,
                last_at: None,
            };
            (health, 0)
        });
        health.invocations += count;
        *durations += duration_sum;
        health.last_at = health.last_at.max(Some(last_at));
        if outcome == "ok" {
            health.ok += count;
        } else {
            *health.errors.entry(outcome).or_default() += count;
        }
    }
    for (version, count) in installs {
        if let Some((health, _)) = by_version.get_mut(&version) {
            health.installs = count;
        }
    }
    let mut versions: Vec<VersionHealth> = by_version
        .into_values()
        .map(|(mut health, durations)| {
            let failed = health.invocations - health.ok;
            health.error_rate_bp = (failed * 10_000 + health.invocations / 2) / health.invocations.max(1);
            health.mean_duration_us = durations / health.invocations.max(1);
            health
        })
        .collect();
    versions.sort_by(|a, b| {
        let parsed = |v: &str| semver::Version::parse(v).ok();
        parsed(&b.version).cmp(&parsed(&a.version)).then_with(|| b.version.cmp(&a.version))
    });
    versions
}

/// How one install has been doing over a window: what its tenant's install page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InstallHealth {
    /// The window's start (milliseconds since the epoch); it ends now.
    pub since: i64,
    pub runs: i64,
    pub failed: i64,
    /// Failed / runs, in basis points (10000 = every one failed); 0 without runs.
    pub error_rate_bp: i64,
    /// The newest failure in the window: when, its outcome and its message.
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct LastError {
    #[sqlx(rename = "started_at")]
    pub at: i64,
    pub outcome: String,
    #[sqlx(rename = "error_message")]
    pub message: Option<String>,
}

/// An install's runs, failures and newest failure since `since`. `install` is one the
/// caller read through [`installs::get`] (which checked it may see it), so it is not read
/// again per window. Two index range reads over `(install_id, started_at)`.
pub async fn install_health(
    market: &Market,
    install: &installs::Install,
    since: i64,
) -> Result<InstallHealth, MarketError> {
    let install = install.id.as_str();
    let mut conn = market.db.pool.acquire().await?;
    let (runs, failed): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) AS runs, COALESCE(SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END), 0) AS failed \
         FROM invocations WHERE install_id = $1 AND started_at >= $2",
    )
    .bind(install)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    let last_error = sqlx::query_as::<_, LastError>(
        "SELECT started_at, outcome, error_message FROM invocations \
         WHERE install_id = $1 AND started_at >= $2 AND outcome <> 'ok' ORDER BY started_at DESC LIMIT 1",
    )
    .bind(install)
    .bind(since)
    .fetch_optional(&mut *conn)
    .await?;
    let error_rate_bp = if runs == 0 { 0 } else { failed * 10_000 / runs };
    Ok(InstallHealth { since, runs, failed, error_rate_bp, last_error })
}
