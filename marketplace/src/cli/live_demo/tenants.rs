//! The demo's tenants, each with its installs: settings, secrets and the plans they chose.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::accounts::{self, Caller, TenantId};
use crate::installs::{self, GrantConsent, InstallRequest};
use crate::market::Market;

/// A tenant to seed: id, display name, and each plugin with its install settings.
type DemoTenant<'a> = (&'a str, &'a str, &'a [(&'a str, Value)]);

/// globex and initech, each with its installs: (tenant id, token) and each as a caller.
pub(super) async fn seed(market: &Market) -> anyhow::Result<(Vec<(String, String)>, Vec<Caller>)> {
    let mut tenants = Vec::new();
    let mut callers = Vec::new();
    let demo_tenants: [DemoTenant; 2] = [
        (
            "globex",
            "Globex Corporation",
            &[
                ("nexus-labs/echo", json!({ "plan": "lifetime", "config": { "prefix": "globex> " } })),
                ("nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900,FR=2000,US-CA=725" } })),
                ("nexus-labs/pii-redactor", json!({ "plan": "team" })),
            ],
        ),
        (
            "initech",
            "Initech",
            &[
                (
                    "nexus-labs/tax-calculator",
                    json!({ "config": { "rates": "DE=1900,FR=2000,US-CA=725", "rounding": "half-up" } }),
                ),
                (
                    "acme-tools/webhook-relay",
                    json!({ "requirement": "^1", "plan": "team", "config": { "prefix": "relay: " } }),
                ),
            ],
        ),
    ];
    for (id, display_name, plugins) in demo_tenants {
        let (token, caller) = seed_one(market, id, display_name, plugins).await?;
        tenants.push((id.to_string(), token));
        callers.push(caller);
    }
    Ok((tenants, callers))
}

/// One tenant and its installs, each consenting to everything its plugin asks for. Its
/// token, and the tenant as a caller.
async fn seed_one(
    market: &Market,
    id: &str,
    display_name: &str,
    plugins: &[(&str, Value)],
) -> anyhow::Result<(String, Caller)> {
    let tenant: TenantId = id.parse()?;
    let token = accounts::create_tenant(&market.db, &tenant, display_name, "demo").await?;
    let caller = Caller::Tenant {
        tenant: tenant.clone(),
        token_id: token.id.to_string(),
        scopes: accounts::TenantScope::ALL.into_iter().collect(),
    };
    for (plugin, settings) in plugins {
        let consent = installs::preview(market, plugin, None).await?;
        let answer = GrantConsent {
            capabilities: consent.capabilities.iter().map(|c| c.capability).collect(),
            hosts: consent.capabilities.iter().flat_map(|c| c.hosts.iter().map(|h| h.host.clone())).collect(),
        };
        let request = InstallRequest {
            plugin: (*plugin).to_string(),
            requirement: Some(settings["requirement"].as_str().unwrap_or("^0.1").to_owned()),
            consent: Some(answer),
            plan: settings["plan"].as_str().map(str::to_owned),
            config: string_map(&settings["config"]),
            secrets: string_map(&settings["secrets"]),
        };
        crate::billing::purchase::install(market, &caller, request).await?;
        println!("  {id} installed {plugin}");
    }
    Ok((token.secret, caller))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}
