//! The market before the load, set up over HTTP with the tokens the server announced: the
//! `bench` publisher's second plugin (pii-redactor, whose manifest prices a `team`
//! subscription), a one-time plan on echo and a cheaper subscription on pii-redactor, one
//! tenant per client, and the consent each plugin asks for.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, Request, form};
use crate::samples;

/// The one-time plan added to echo.
pub const LIFETIME: &str = "lifetime";
/// The subscription added to pii-redactor, cheaper than its manifest's `team`.
pub const PRO: &str = "pro";
/// The subscription pii-redactor's manifest prices.
pub const TEAM: &str = "team";
/// The version the server's seed published echo at, and this setup pii-redactor at.
pub const FIRST_VERSION: &str = "0.1.0";

/// A plugin tenants buy: its id, consent answer and the prices of its plans.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// `bench/<sample>`.
    pub id: String,
    /// What installing it asks to be granted, answered in full.
    pub consent: Value,
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub model: String,
    pub currency: String,
    pub minor: i64,
}

/// A tenant of the load and its token.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub token: Arc<str>,
}

#[derive(Debug)]
pub struct Setup {
    pub echo: Plugin,
    pub redactor: Plugin,
    pub tenants: Vec<Tenant>,
    /// The component bytes the publisher publishes, by sample: read once, so a rebuild of
    /// the samples during the load cannot take them away.
    pub components: BTreeMap<&'static str, Vec<u8>>,
}

/// The samples the scenario publishes.
pub const SAMPLES: [&str; 2] = ["echo", "pii-redactor"];

pub async fn setup(api: &Api, operator: &Arc<str>, publisher: &Arc<str>, tenants: u32) -> anyhow::Result<Setup> {
    let mut components = BTreeMap::new();
    for sample in SAMPLES {
        components.insert(sample, samples::component(sample)?);
    }
    let component = components.get("pii-redactor").context("no pii-redactor component")?;
    api.expect(&publish_request(publisher, "pii-redactor", FIRST_VERSION, component, None)?, 201).await?;
    let lifetime = json!({ "key": LIFETIME, "name": "Lifetime", "model": "one-time", "currency": "EUR",
                           "price_minor": 4900 });
    add_plan(api, publisher, "echo", lifetime).await?;
    let pro = json!({ "key": PRO, "name": "Pro", "model": "subscription", "currency": "USD", "price_minor": 900,
                      "interval": "month" });
    add_plan(api, publisher, "pii-redactor", pro).await?;
    let mut created = Vec::new();
    for n in 0..tenants {
        created.push(create_tenant(api, operator, &format!("market-{n}")).await?);
    }
    let buyer = &created.first().context("no tenants")?.token;
    let echo = plugin(api, buyer, "echo").await?;
    let redactor = plugin(api, buyer, "pii-redactor").await?;
    check_prices(&echo, &redactor)?;
    Ok(Setup { echo, redactor, tenants: created, components })
}

/// The publish request of `sample` at `version`.
pub fn publish_request(
    publisher: &Arc<str>,
    sample: &str,
    version: &str,
    component: &[u8],
    key: Option<String>,
) -> anyhow::Result<Request> {
    let manifest = samples::manifest(sample, Some(version))?;
    let body = form(&[("manifest", manifest.as_bytes()), ("component", component)])?;
    let request = Request::new(Method::POST, "/v1/publish", publisher).form(body);
    Ok(match key {
        Some(key) => request.key(key),
        None => request,
    })
}

async fn add_plan(api: &Api, publisher: &Arc<str>, sample: &str, plan: Value) -> anyhow::Result<()> {
    let path = format!("/v1/plugins/{}/{sample}/plans", samples::PUBLISHER);
    api.expect(&Request::new(Method::POST, path, publisher).json(plan), 201).await?;
    Ok(())
}

async fn create_tenant(api: &Api, operator: &Arc<str>, id: &str) -> anyhow::Result<Tenant> {
    let request = Request::new(Method::POST, "/v1/tenants", operator).json(json!({ "id": id, "display_name": id }));
    let issued = api.expect(&request, 201).await?;
    let secret = issued["secret"].as_str().with_context(|| format!("no `secret` in {issued}"))?;
    Ok(Tenant { id: id.to_string(), token: secret.into() })
}

/// The plugin's consent (answered with everything it requests) and offered plans.
async fn plugin(api: &Api, tenant: &Arc<str>, sample: &'static str) -> anyhow::Result<Plugin> {
    let id = format!("{}/{sample}", samples::PUBLISHER);
    let preview = api.expect(&Request::new(Method::GET, format!("/v1/catalog/{id}/consent"), tenant), 200).await?;
    let plans = api.expect(&Request::new(Method::GET, format!("/v1/plugins/{id}/plans"), tenant), 200).await?;
    let mut prices = BTreeMap::new();
    for plan in plans.as_array().with_context(|| format!("plans of {id}: {plans}"))? {
        let key = plan["key"].as_str().with_context(|| format!("a plan without a key: {plan}"))?;
        let price = Price {
            model: plan["model"].as_str().unwrap_or_default().to_string(),
            currency: plan["currency"].as_str().unwrap_or_default().to_string(),
            minor: plan["price_minor"].as_i64().unwrap_or_default(),
        };
        prices.insert(key.to_string(), price);
    }
    Ok(Plugin { id, consent: consent_answer(&preview), prices })
}

/// Consent to every capability and host the preview lists.
fn consent_answer(preview: &Value) -> Value {
    let requested = preview["capabilities"].as_array().cloned().unwrap_or_default();
    let capabilities: Vec<Value> = requested.iter().map(|c| c["capability"].clone()).collect();
    let hosts: Vec<Value> = requested
        .iter()
        .flat_map(|c| c["hosts"].as_array().cloned().unwrap_or_default())
        .map(|h| h["host"].clone())
        .collect();
    json!({ "capabilities": capabilities, "hosts": hosts })
}

/// The scenario needs a paid one-time plan on echo and two paid subscriptions in one currency
/// on pii-redactor.
fn check_prices(echo: &Plugin, redactor: &Plugin) -> anyhow::Result<()> {
    let priced = |plugin: &Plugin, key: &str, model: &str| -> anyhow::Result<Price> {
        let price = plugin.prices.get(key).with_context(|| format!("{} offers no `{key}` plan", plugin.id))?;
        anyhow::ensure!(price.model == model && price.minor > 0, "{}'s `{key}` is {price:?}", plugin.id);
        Ok(price.clone())
    };
    priced(echo, LIFETIME, "one-time")?;
    let (pro, team) = (priced(redactor, PRO, "subscription")?, priced(redactor, TEAM, "subscription")?);
    anyhow::ensure!(pro.currency == team.currency, "{PRO} is in {} and {TEAM} in {}", pro.currency, team.currency);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_answers_every_capability_and_host() {
        let preview = json!({ "capabilities": [
            { "capability": "log", "reason": "r" },
            { "capability": "http", "reason": "r", "hosts": [{ "host": "api.example.com", "reason": "r" }] },
        ] });
        assert_eq!(consent_answer(&preview), json!({ "capabilities": ["log", "http"], "hosts": ["api.example.com"] }));
    }
}
