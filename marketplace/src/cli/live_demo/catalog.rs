//! The demo's catalog: two publishers with signing keys, their plugins published, signed and
//! given listing images, then priced beyond what their manifests say, with the revenue
//! share each publisher gets.

use std::sync::Arc;

use nexus_registry::signature::signing_message;
use nexus_registry::{Credential, Manifest, PublishRequest, SecretKey, SignedBy};

use crate::accounts::Caller;
use crate::billing::plans::{PlanModel, PlanRequest, UsageTerms};
use crate::market::Market;

/// The second publisher's plugin: the echo component under its own listing.
const RELAY_MANIFEST: &str = r#"id = "acme-tools/webhook-relay"
version = "{version}"
summary = "Relay any event as-is to the systems that need it, with an optional prefix"
description = """
Passes every event through unchanged to the systems that need it.

- **Any event type**: it subscribes to `*`.
- **Prefix**: set `prefix` to mark relayed payloads.

Useful to test an integration end to end before building your own plugin."""
changelog = "{changelog}"
categories = ["developer-tools", "productivity"]
license = "MIT"
contract = "1.0"
event-types = ["*"]

[links]
documentation = "https://acme-tools.example/docs/relay"
support = "https://acme-tools.example/support"

[capabilities.config]
reason = "Reads an optional prefix to put before the payload"

[[pricing]]
id = "team"
name = "Team"
model = "subscription"
price = "9.00"
currency = "USD"
interval = "month"

[media]
icon = "media/relay-icon.png"
screenshots = ["media/relay-screenshot-1.png", "media/relay-screenshot-2.png"]
"#;

/// Publishes nexus-labs' sample plugins and acme-tools' relay in two versions, each signed
/// and with its listing images. nexus-labs' credential and its publisher token.
pub(super) async fn publish(market: &Arc<Market>) -> anyhow::Result<(Credential, String)> {
    let publisher_name = "nexus-labs".parse()?;
    let publisher = market.registry.create_publisher(&publisher_name, "Nexus Labs", "demo").await.map_err(|e| {
        anyhow::anyhow!("{e}: the demo needs an empty database; drop --database or point it at a fresh one")
    })?;
    let credential = market.registry.authenticate(&publisher.secret).await?;
    let key = SecretKey::generate()?;
    market.registry.add_key(&credential, &key.public_key()).await?;
    for (name, path, manifest_text) in nexus_sample_plugins::PUBLISHABLE {
        publish_signed(market, &credential, &key, path, manifest_text).await?;
        let images = put_media(market, &credential, name, manifest_text).await?;
        println!("  published and signed nexus-labs/{name} 0.1.0, with {images} listing images");
    }
    // A second publisher, its plugin built on the echo component, in two versions.
    let acme = market.registry.create_publisher(&"acme-tools".parse()?, "Acme Tools", "demo").await?;
    let acme_credential = market.registry.authenticate(&acme.secret).await?;
    let acme_key = SecretKey::generate()?;
    market.registry.add_key(&acme_credential, &acme_key.public_key()).await?;
    let changes = [("1.0.0", "First release."), ("1.1.0", "Adds the `prefix` setting.")];
    for (version, changelog) in changes {
        let manifest = RELAY_MANIFEST.replace("{version}", version).replace("{changelog}", changelog);
        publish_signed(market, &acme_credential, &acme_key, nexus_sample_plugins::ECHO, &manifest).await?;
        println!("  published and signed acme-tools/webhook-relay {version}");
    }
    put_media(market, &acme_credential, "webhook-relay", &RELAY_MANIFEST.replace("{version}", "1.1.0")).await?;
    Ok((credential, publisher.secret))
}

async fn publish_signed(
    market: &Arc<Market>,
    credential: &Credential,
    key: &SecretKey,
    path: &str,
    manifest_text: &str,
) -> anyhow::Result<()> {
    let component = nexus_sample_plugins::bytes(path)?;
    let manifest = Manifest::from_toml(manifest_text)?;
    let digest = nexus_host::Digest::of(&component);
    let signature = key.sign(&signing_message(&manifest.id, &manifest.version, &digest));
    let request = PublishRequest {
        manifest: manifest_text.to_string(),
        component,
        claimed_digest: Some(digest.to_string()),
        signature: Some(SignedBy { key_fingerprint: key.public_key().fingerprint(), signature }),
    };
    market.publish(credential, request).await?;
    Ok(())
}

/// Puts up the listing images the manifest's `[media]` names, from the samples' committed
/// files, as `nexus publish` does from a project folder; screenshots get a caption. How many.
async fn put_media(
    market: &Arc<Market>,
    credential: &Credential,
    package: &str,
    manifest_text: &str,
) -> anyhow::Result<usize> {
    let manifest = Manifest::from_toml(manifest_text)?;
    let id = &manifest.id;
    let caller = Caller::Publisher(credential.clone());
    let file = |path: &str| {
        nexus_sample_plugins::media(package, path)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow::anyhow!("{package}'s [media] names {path}, which is not among the samples' images"))
    };
    let (db, registry) = (&market.db, &market.registry);
    let mut count = 0;
    if let Some(icon) = &manifest.media.icon {
        crate::media::put(db, registry, &caller, id, crate::media::Place::ICON, None, file(icon)?).await?;
        count += 1;
    }
    let captions = ["Events as they arrive, with what the plugin did to each", "Totals per day at a glance"];
    for (index, path) in manifest.media.screenshots.iter().enumerate() {
        let place = crate::media::Place::screenshot(index as u32 + 1)?;
        let caption = captions.get(index).copied();
        crate::media::put(db, registry, &caller, id, place, caption, file(path)?).await?;
        count += 1;
    }
    Ok(count)
}

/// A plan request with the model's fields left empty.
fn plan(key: &str, name: &str, model: PlanModel, currency: &str) -> PlanRequest {
    PlanRequest {
        key: key.into(),
        name: name.into(),
        model,
        currency: Some(currency.into()),
        price_minor: 0,
        interval: None,
        trial_days: 0,
        usage: None,
    }
}

/// Prices the plugins beyond what their manifests seeded, and sets the revenue share.
pub(super) async fn price(market: &Market, nexus_labs: &Credential, operator: &Caller) -> anyhow::Result<()> {
    let publisher = Caller::Publisher(nexus_labs.clone());
    for (plugin, request) in plans() {
        let key = request.key.clone();
        crate::billing::plans::put(market, &publisher, &plugin.parse()?, request).await?;
        println!("  priced {plugin} plan {key}");
    }
    share(market, operator).await
}

/// The plans beyond the manifests': a one-time purchase, usage with a cap, and two
/// subscriptions, one with a trial.
fn plans() -> [(&'static str, PlanRequest); 4] {
    use nexus_money::period::Interval;
    [
        (
            "nexus-labs/echo",
            PlanRequest { price_minor: 4900, ..plan("lifetime", "Lifetime", PlanModel::OneTime, "EUR") },
        ),
        (
            "nexus-labs/tax-calculator",
            PlanRequest {
                usage: Some(UsageTerms {
                    meter: "tax-calculations".into(),
                    unit_minor: 2,
                    included_units: 50,
                    cap_minor: Some(2000),
                }),
                ..plan("per-calculation", "Pay per calculation", PlanModel::Usage, "EUR")
            },
        ),
        (
            "nexus-labs/pii-redactor",
            PlanRequest {
                price_minor: 2900,
                interval: Some(Interval::Month),
                trial_days: 14,
                ..plan("team", "Team", PlanModel::Subscription, "USD")
            },
        ),
        (
            "nexus-labs/pii-redactor",
            PlanRequest {
                price_minor: 5900,
                interval: Some(Interval::Month),
                ..plan("business", "Business", PlanModel::Subscription, "USD")
            },
        ),
    ]
}

/// The platform's share of sales: from nexus-labs 0% up to 50.00 then 15%, from acme-tools 20%.
async fn share(market: &Market, operator: &Caller) -> anyhow::Result<()> {
    use crate::billing::share::{PolicyRequest, TierSpec, put};
    let tiered = vec![TierSpec { up_to: Some(50), rate_bp: 0 }, TierSpec { up_to: None, rate_bp: 1500 }];
    put(
        market,
        operator,
        PolicyRequest {
            publisher: Some("nexus-labs".into()),
            plugin: None,
            plan: None,
            tiers: tiered,
            effective_from: None,
        },
    )
    .await?;
    let flat = vec![TierSpec { up_to: None, rate_bp: 2000 }];
    put(
        market,
        operator,
        PolicyRequest {
            publisher: Some("acme-tools".into()),
            plugin: None,
            plan: None,
            tiers: flat,
            effective_from: None,
        },
    )
    .await?;
    println!("  revenue share: nexus-labs 0% up to 50.00 then 15%; acme-tools 20%");
    Ok(())
}
