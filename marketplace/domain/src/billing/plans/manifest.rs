//! Plans from a manifest's `[[pricing]]`: checked before a publish is stored, seeded after,
//! and given to plugins and installs that predate billing.

use nexus_money::period::Interval;
use nexus_registry::manifest::{Manifest, PricingModel};
use nexus_registry::{PluginId, RegistryError};

use super::{PlanModel, PlanRequest, UsageTerms, check, choose, insert};
use crate::error::MarketError;
use crate::installs::billing_state;
use crate::market::Market;

/// The manifest's `[[pricing]]` as plan requests.
pub(super) fn from_manifest(manifest: &Manifest) -> Vec<PlanRequest> {
    manifest
        .pricing
        .iter()
        .map(|p| {
            let base = PlanRequest {
                key: p.id.clone(),
                name: p.name.clone(),
                model: PlanModel::Free,
                currency: None,
                price_minor: 0,
                interval: None,
                trial_days: 0,
                usage: None,
            };
            match &p.model {
                PricingModel::Free => base,
                PricingModel::Subscription { amount_minor, currency, interval, trial_days } => PlanRequest {
                    model: PlanModel::Subscription,
                    currency: Some(currency.to_string()),
                    price_minor: *amount_minor,
                    trial_days: *trial_days,
                    interval: Some(match interval {
                        nexus_registry::manifest::Interval::Month => Interval::Month,
                        nexus_registry::manifest::Interval::Year => Interval::Year,
                    }),
                    ..base
                },
                PricingModel::Usage { meter, unit_amount_minor, currency, included_units, cap_minor } => PlanRequest {
                    model: PlanModel::Usage,
                    currency: Some(currency.to_string()),
                    usage: Some(UsageTerms {
                        meter: meter.clone(),
                        unit_minor: *unit_amount_minor,
                        included_units: *included_units,
                        cap_minor: *cap_minor,
                    }),
                    ..base
                },
                PricingModel::OneTime { amount_minor, currency } => PlanRequest {
                    model: PlanModel::OneTime,
                    currency: Some(currency.to_string()),
                    price_minor: *amount_minor,
                    ..base
                },
            }
        })
        .collect()
}

/// Checks that a manifest's pricing makes valid plans (before anything is stored at
/// publish): a currency without minor units, say, is refused here.
pub fn check_manifest(manifest: &Manifest) -> Result<(), MarketError> {
    from_manifest(manifest).iter().try_for_each(check)
}

/// Seeds plans from a published manifest: each `[[pricing]]` key the plugin has no plan for
/// yet becomes revision 1. Keys the publisher already manages are left as they are.
pub async fn seed(market: &Market, plugin: &PluginId, manifest: &Manifest, actor: &str) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for request in from_manifest(manifest) {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM plans WHERE plugin_id = $1 AND plan_key = $2 LIMIT 1")
                .bind(plugin.to_string())
                .bind(&request.key)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() && check(&request).is_ok() {
            insert(&mut tx, &plugin.to_string(), &request, 1, actor, now).await?;
        }
    }
    crate::catalog::reprice(&mut tx, &plugin.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives plans to plugins published before plans existed (from their newest manifest), and
/// binds installs made before billing to their plan key's offered revision. Such installs
/// start paying from now: nothing before billing existed is charged.
pub async fn backfill(market: &Market) -> Result<(), MarketError> {
    let unpriced: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT plugin_id FROM installs WHERE plan_id IS NULL \
         UNION SELECT id FROM plugins WHERE id NOT IN (SELECT plugin_id FROM plans)",
    )
    .fetch_all(&market.db.pool)
    .await?;
    for plugin in unpriced {
        let id: PluginId = plugin.parse().map_err(RegistryError::from)?;
        let versions = match market.registry.versions(&id).await {
            // Development versions only (`dev_versions.rs`): their publishes seed plans.
            Err(RegistryError::NotFound(_)) => continue,
            other => other?,
        };
        if let Some(newest) = versions.iter().max_by(|a, b| a.version.cmp(&b.version)) {
            seed(market, &id, &newest.manifest, "system:backfill").await?;
        }
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT id, plan FROM installs WHERE plugin_id = $1 AND plan_id IS NULL",
        )
        .bind(&plugin)
        .fetch_all(&market.db.pool)
        .await?;
        for (install, key) in rows {
            let chosen = match choose(market, &id, Some(&key)).await {
                Ok(plan) => plan,
                Err(_) => match choose(market, &id, None).await {
                    Ok(plan) => plan,
                    Err(_) => continue,
                },
            };
            let now = market.billing.clock.now_ms();
            billing_state::bind_unbilled(market.db.writer(), &install, chosen.id.as_str(), &chosen.key, now).await?;
        }
    }
    Ok(())
}
