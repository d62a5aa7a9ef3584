//! `nexus serve --demo`: a live marketplace to look at. It seeds a fresh data folder with two
//! publishers whose plugins are published, signed and priced (a one-time purchase, a
//! subscription with a trial, usage with a cap), two tenants with installs, settings and
//! secrets, a featured listing, and revenue-share policies. With the process clock moved a
//! month back it then lives through that month day by day on the real paths: events, daily
//! billing runs, a declined card that is collected the next day, a plan upgrade, a refund.
//! Then it pays the partners out, serves the API at the real time, bills every minute, runs
//! payouts every hour (each partner at most once per half month), and keeps events flowing from
//! both tenants through `POST /v1/events` (over loopback HTTP, as a client would), printing
//! the tokens to try the API with and a running tally of deliveries, GMV, fees and partner
//! earnings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nexus_registry::publishers::Issuer;
use nexus_registry::signature::signing_message;
use nexus_registry::{Credential, Manifest, PublishRequest, SecretKey, SignedBy};
use serde_json::{Value, json};

use crate::accounts::{self, Caller, TenantId};
use crate::billing::plans::{PlanModel, PlanRequest, UsageTerms};
use crate::billing::provider::Scripted;
use crate::billing::{DAY_MS, SandboxProvider, SystemClock};
use crate::installs::{self, GrantConsent, InstallRequest};
use crate::market::Market;
use crate::people::Role;
use crate::server::{self, AppState, ServeConfig};

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

/// How often each tenant sends an event.
const EVENT_EVERY: Duration = Duration::from_millis(700);

/// A tenant to seed: id, display name, and each plugin with its install settings.
type DemoTenant<'a> = (&'a str, &'a str, &'a [(&'a str, Value)]);

/// Days of history lived through before serving: at least one whole month, so usage is
/// billed in arrears once before the demo serves.
const HISTORY_DAYS: i64 = 31;

/// A person to seed: address, name, password (anyone reading the demo's output may use
/// it), the organization (kind, id) and the role there.
type DemoPersonSeed = (&'static str, &'static str, &'static str, (&'static str, &'static str), Role);

const DEMO_PEOPLE: [DemoPersonSeed; 6] = [
    ("grace@nexus.example", "Grace Operator", "nexus-demo-password", ("operator", "marketplace"), Role::Owner),
    ("lin@nexus-labs.example", "Lin Labs", "nexus-demo-password", ("publisher", "nexus-labs"), Role::Owner),
    ("sam@nexus-labs.example", "Sam Finance", "nexus-demo-password", ("publisher", "nexus-labs"), Role::Finance),
    ("ada@globex.example", "Ada Globex", "globex-demo-password", ("tenant", "globex"), Role::Owner),
    ("bo@globex.example", "Bo Globex", "nexus-demo-password", ("tenant", "globex"), Role::Admin),
    ("kim@initech.example", "Kim Initech", "nexus-demo-password", ("tenant", "initech"), Role::Owner),
];

/// The people seeded, as the welcome prints them: address, password, what they are.
struct DemoPerson {
    email: &'static str,
    password: &'static str,
    about: String,
}

struct Seeded {
    operator: String,
    publisher: String,
    tenants: Vec<(String, String)>,
    /// The tenants as callers, for the history's events and plan changes.
    callers: Vec<Caller>,
    operator_caller: Caller,
}

pub async fn serve(mut config: ServeConfig) -> anyhow::Result<()> {
    if config.database_url.is_none() {
        // A fresh folder each time: the demo never mixes with real data.
        let folder = std::env::temp_dir().join(format!("nexus-demo-{}", std::process::id()));
        if folder.exists() {
            std::fs::remove_dir_all(&folder)?;
        }
        config.data_dir = folder;
    }
    let _only_server = server::hold_sqlite_file(&config)?;
    // The whole process lives the history a month back (records, audit log and billing
    // alike), then serves at the real time.
    nexus_registry::db::shift_process_clock(-HISTORY_DAYS * DAY_MS);
    let clock = Arc::new(SystemClock::shifted(0));
    let sandbox = Arc::new(SandboxProvider::journaled(config.sandbox_journal())?);
    let market = Arc::new(config.market_on(clock.clone(), sandbox.clone()).await?);
    println!("seeding the demo marketplace in {} ...", config.data_dir.display());
    let seeded = seed(&market, &sandbox).await?;
    history(&market, &seeded).await?;
    let people = seed_people(&market).await?;
    seed_partner_tiers(&market, &seeded.operator_caller).await?;
    seed_reviews(&market, &seeded).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {}: {e} (pass --listen 127.0.0.1:<free port>)", config.listen)
    })?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    let outbox = config.smtp_url.is_none().then(|| config.outbox());
    print_welcome(&url, &seeded, &people, outbox.as_deref());
    let traffic = tokio::spawn(traffic(url.clone(), seeded.tenants.clone(), market.clone()));
    let billing = crate::billing::run::keep_billing(market.clone(), Duration::from_secs(60));
    let paying = crate::billing::payouts::keep_paying(market.clone(), Duration::from_secs(3600));
    let tiers = crate::partner_tiers::keep_current(market.clone(), Duration::from_secs(3600));
    let placements = crate::co_marketing::keep_applied(market.clone(), Duration::from_secs(60));
    let delivering = crate::runner::worker::keep_delivering(market.clone());
    let state = AppState { market, public_url: url };
    let result = server::serve_on(listener, state, server::shutdown_signal()).await;
    traffic.abort();
    billing.abort();
    paying.abort();
    tiers.abort();
    placements.abort();
    delivering.abort();
    result
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
async fn price(market: &Market, nexus_labs: &Credential, operator: &Caller) -> anyhow::Result<()> {
    use nexus_money::period::Interval;
    let publisher = Caller::Publisher(nexus_labs.clone());
    let plans = [
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
    ];
    for (plugin, request) in plans {
        let key = request.key.clone();
        crate::billing::plans::put(market, &publisher, &plugin.parse()?, request).await?;
        println!("  priced {plugin} plan {key}");
    }
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

async fn seed(market: &Arc<Market>, sandbox: &SandboxProvider) -> anyhow::Result<Seeded> {
    let operator = accounts::issue_operator_token(&market.db, "demo", None, &Issuer::by("demo")).await?;
    let operator_caller = Caller::Operator { token_id: operator.id.clone() };
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
    price(market, &credential, &operator_caller).await?;
    // initech's first card payment is declined; the next day's billing run collects it.
    sandbox.script("initech", [Scripted::Refuse("card_declined".into())]);
    let featured = "nexus-labs/tax-calculator".parse()?;
    crate::co_marketing::feature(market, &operator_caller, &featured, Some("Launch partner: tax made simple")).await?;

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
        let tenant: TenantId = id.parse()?;
        let token = accounts::create_tenant(&market.db, &tenant, display_name, "demo").await?;
        let caller = Caller::Tenant {
            tenant: tenant.clone(),
            token_id: token.id.clone(),
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
            installs::create(market, &caller, request).await?;
            println!("  {id} installed {plugin}");
        }
        tenants.push((id.to_string(), token.secret));
        callers.push(caller);
    }
    Ok(Seeded { operator: operator.secret, publisher: publisher.secret, tenants, callers, operator_caller })
}

/// Reviews the demo's tenants leave after their month of use (each ran what it reviews),
/// nexus-labs' reply to one, and a helpful mark.
async fn seed_reviews(market: &Market, seeded: &Seeded) -> anyhow::Result<()> {
    use crate::reviews::{self, ReviewInput};
    let reviews: [(usize, &str, i64, &str, &str); 5] = [
        (
            0,
            "nexus-labs/echo",
            5,
            "Our first stop for testing an integration",
            "We point every new event source at echo first: what it answers is exactly what our plugins will get.",
        ),
        (
            0,
            "nexus-labs/tax-calculator",
            4,
            "Exact to the cent, wish it knew Canada",
            "Totals per region match our accountant's to the cent. Canadian provinces would make it five stars.",
        ),
        (
            0,
            "nexus-labs/pii-redactor",
            5,
            "Keeps phone numbers out of our ticket tool",
            "Set up in a minute; support tickets reach our tools with [phone] and [email] instead of the real thing.",
        ),
        (
            1,
            "nexus-labs/tax-calculator",
            5,
            "Set up in five minutes",
            "Rates in, totals out. The half-up rounding option matched our old system.",
        ),
        (
            1,
            "acme-tools/webhook-relay",
            3,
            "Does what it says, docs are thin",
            "Relays everything as promised; we had to read the source to find the prefix setting.",
        ),
    ];
    let mut ids = Vec::new();
    for (tenant, plugin, rating, title, body) in reviews {
        let input = ReviewInput { rating, title: title.into(), body: body.into() };
        let review = reviews::write(market, &seeded.callers[tenant], &plugin.parse()?, &input, true).await?;
        println!("  {} reviewed {plugin}: {rating} stars", seeded.tenants[tenant].0);
        ids.push(review.id);
    }
    let nexus_labs = Caller::Publisher(market.registry.authenticate(&seeded.publisher).await?);
    let reply = "Thank you! Canadian provinces and territories are planned for 0.2; follow the changelog.";
    reviews::reply(market, &nexus_labs, &ids[1], Some(reply)).await?;
    reviews::mark_helpful(market, &seeded.callers[1], &ids[1], true).await?;
    println!("  nexus-labs replied to globex's tax-calculator review; initech found it helpful");
    let profile = crate::publisher_profiles::ProfileEdit {
        website: Some("https://nexus-labs.example".into()),
        support: Some("mailto:support@nexus-labs.example".into()),
        about: "Nexus Labs builds the marketplace's first-party plugins: **tax**, **privacy** and \
                **messaging** building blocks, each open source and priced per use where it can be."
            .into(),
    };
    crate::publisher_profiles::set(&market.db, &nexus_labs, "nexus-labs", &profile).await?;
    Ok(())
}

/// People who sign in with a password: an operator (with two-step sign-in, its key
/// printed), nexus-labs' owner and a finance member, globex's owner and an admin, and
/// initech's owner, whose partner application waits in the operators' queue.
async fn seed_people(market: &Market) -> anyhow::Result<Vec<DemoPerson>> {
    let mut people = Vec::new();
    for (email, name, password, org, role) in DEMO_PEOPLE {
        let person = crate::people::add_confirmed_member(market, email, name, password, org, role).await?;
        let mut about = format!("{} of {}", role.as_str(), crate::people::login::org_name(org.0, org.1));
        if org.0 == "operator" {
            let key = crate::people::second_factor::set_up_for_demo(market, &person).await?;
            about = format!("operator; two-step key {key}");
        }
        if org.1 == "initech" {
            let application = crate::partner_program::Application {
                company: "Initech Labs".into(),
                namespace: "initech-labs".into(),
                website: "https://initech.example".into(),
                support_email: "help@initech.example".into(),
                agreement_version: crate::partner_program::AGREEMENT_VERSION.into(),
            };
            crate::partner_program::apply(market, &person, application).await?;
            about.push_str("; partner application pending");
        }
        people.push(DemoPerson { email, password, about });
    }
    Ok(people)
}

/// Three partner tiers: Registered (everyone), Select (50.00 EUR or 50.00 USD collected over
/// twelve months, with 10% above the first 1,000), Premier (by hand); today's run places the
/// partners.
async fn seed_partner_tiers(market: &Market, operator: &Caller) -> anyhow::Result<()> {
    use crate::billing::share::TierSpec;
    use crate::partner_tiers::{self, TierRequest};
    let tier = |name: &str, rank, automatic, thresholds: &[(&str, i64)], share_tiers| TierRequest {
        name: name.to_string(),
        rank,
        automatic,
        thresholds: thresholds.iter().map(|(code, minor)| (code.to_string(), *minor)).collect(),
        share_tiers,
        badge: None,
    };
    let select = vec![TierSpec { up_to: Some(1000), rate_bp: 0 }, TierSpec { up_to: None, rate_bp: 1000 }];
    partner_tiers::put(market, operator, "registered", tier("Registered", 1, true, &[], None)).await?;
    let thresholds = [("EUR", 5000), ("USD", 5000)];
    partner_tiers::put(market, operator, "select", tier("Select", 2, true, &thresholds, Some(select))).await?;
    partner_tiers::put(market, operator, "premier", tier("Premier", 3, false, &[], None)).await?;
    for change in partner_tiers::run_if_due(market).await?.unwrap_or_default() {
        println!("  partner tier: {} is {}", change.publisher, change.to);
    }
    Ok(())
}

/// Lives through the month before now, a day at a time, on the real paths: each day both
/// tenants send events and billing runs; globex upgrades pii-redactor on day 20 and gets a
/// goodwill refund on day 22. Ends at the real time.
async fn history(market: &Market, seeded: &Seeded) -> anyhow::Result<()> {
    use crate::billing::{refunds, run, settle, views};
    println!("living through the last {HISTORY_DAYS} days (events, daily billing runs) ...");
    let mut n = 0u64;
    for day in 0..=HISTORY_DAYS {
        nexus_registry::db::shift_process_clock(-(HISTORY_DAYS - day) * DAY_MS);
        for _ in 0..4 {
            for caller in &seeded.callers {
                let request = serde_json::from_value(next_event(n))?;
                crate::runner::send_event(market, caller, request).await?;
                n += 1;
            }
        }
        if day == 20 {
            let globex = &seeded.callers[0];
            if let Some(install) = own_install(market, globex, "nexus-labs/pii-redactor").await? {
                let change = settle::PlanChange { plan: "business".into() };
                settle::change_plan(market, globex, &install, change, Some("demo-upgrade")).await?;
                println!("  day {day}: globex moved pii-redactor from team to business (prorated)");
            }
        }
        if day == 22 {
            let charges = crate::billing::charges::list(
                market,
                &seeded.operator_caller,
                &crate::billing::charges::ChargeQuery { tenant: Some("globex".into()), ..Default::default() },
            )
            .await?;
            if let Some(charge) = charges.items.iter().find(|c| c.line == "one-time") {
                let request =
                    refunds::RefundRequest { amount_minor: 900, reason: "goodwill: slow support reply".into() };
                refunds::refund(market, &seeded.operator_caller, &charge.id.parse()?, request, Some("demo-refund"))
                    .await?;
                println!("  day {day}: refunded 9.00 EUR of globex's echo purchase");
            }
        }
        let report = run::run(market, market.billing.clock.now_ms()).await?;
        if report.charges_created + report.collected + report.declined > 0 {
            println!(
                "  day {day}: billing charged {} line(s), collected {}, declined {}",
                report.charges_created, report.collected, report.declined
            );
        }
    }
    nexus_registry::db::shift_process_clock(0);
    run::run(market, market.billing.clock.now_ms()).await?;
    let payouts = crate::billing::payouts::run(market, market.billing.clock.now_ms()).await?;
    let paid: Vec<String> = payouts
        .paid_minor
        .iter()
        .map(|(code, minor)| {
            nexus_money::Currency::from_code(code)
                .map_or_else(|_| format!("{minor} {code}"), |c| nexus_money::Money::new(*minor, c).to_string())
        })
        .collect();
    println!(
        "  payout run {}: {} payout(s) ({}), {} balance(s) under the minimum carried forward",
        payouts.period,
        payouts.paid,
        paid.join(", "),
        payouts.carried_forward.len()
    );
    for totals in views::totals(market).await? {
        println!("  month so far, {}: {}", totals.currency, totals.describe());
    }
    Ok(())
}

/// The id of the tenant's live install of `plugin`.
async fn own_install(market: &Market, caller: &Caller, plugin: &str) -> anyhow::Result<Option<String>> {
    let page = installs::list(market, caller, None, false, &crate::error::PageQuery::default()).await?;
    Ok(page.items.into_iter().find(|i| i.plugin == plugin).map(|i| i.id))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
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

fn print_welcome(url: &str, seeded: &Seeded, people: &[DemoPerson], outbox: Option<&std::path::Path>) {
    println!("\nNexus demo marketplace on {url}  (Ctrl-C stops it)\n");
    println!("tokens (demo only):");
    println!("  operator      {}", seeded.operator);
    println!("  publisher     {}  (nexus-labs)", seeded.publisher);
    for (tenant, token) in &seeded.tenants {
        println!("  tenant        {token}  ({tenant})");
    }
    let globex = seeded.tenants.first().map(|(_, t)| t.as_str()).unwrap_or_default();
    println!("people (demo only):");
    for person in people {
        println!("  person        {} / {}  ({})", person.email, person.password, person.about);
    }
    println!("\nweb console: {url}/console  (sign in as a person, or with any token above)");
    println!("command line: nexus login --registry {url} --email bo@globex.example  (then nexus whoami)");
    match outbox {
        Some(outbox) => println!("mail (sign-up and reset links) is written to {}", outbox.display()),
        None => println!("mail (sign-up and reset links) goes through --smtp-url"),
    }
    println!("\ntry:");
    println!("  curl -s '{url}/v1/catalog?q=tax' | jq");
    println!("  curl -s '{url}/v1/catalog/nexus-labs/tax-calculator/reviews' | jq");
    println!("  curl -s -H 'Authorization: Bearer {globex}' {url}/v1/installs | jq");
    println!(
        "  curl -s -H 'Authorization: Bearer {globex}' -H 'Content-Type: application/json' \\\n       \
         -d '{{\"type\":\"ticket.created\",\"payload\":{{\"ticket_id\":\"T-1\",\"subject\":\"Refund\",\"priority\":\"high\",\"body\":\"mail me at jo@example.com\"}}}}' {url}/v1/events | jq"
    );
    println!("  curl -s -H 'Authorization: Bearer {}' '{url}/v1/audit?per_page=5' | jq", seeded.operator);
    println!("  curl -s -H 'Authorization: Bearer {}' {url}/v1/publishers/nexus-labs/sales | jq", seeded.publisher);
    println!(
        "  curl -s -H 'Authorization: Bearer {globex}' {url}/v1/charges | jq '.items[] | {{line, amount_minor, currency, status}}'"
    );
    println!("  curl -s -H 'Authorization: Bearer {}' {url}/v1/ledger/verify | jq .ok", seeded.operator);
    println!("  curl -s {url}/metrics | grep nexus_invocations_total");
    println!("  curl -s {url}/openapi.json | jq '.paths | keys'\n");
}

/// Events both tenants send, in turn, for as long as the server runs.
const PRIORITIES: [&str; 3] = ["low", "normal", "high"];

fn next_event(n: u64) -> Value {
    let region = ["DE", "FR", "US-CA"][(n % 3) as usize];
    match n % 4 {
        0 | 1 => json!({ "type": "order.created", "payload": {
            "order_id": format!("o-{n}"), "amount_minor": 1000 + (n % 17) * 250, "currency": "EUR", "region": region } }),
        2 => json!({ "type": "ticket.created", "payload": {
            "ticket_id": format!("T-{n}"), "subject": "Refund", "priority": PRIORITIES[(n % 3) as usize],
            "body": format!("call me on +49 30 1234 {n:04} or mail jo{n}@example.com") } }),
        _ => json!({ "type": "order.refunded", "payload": {
            "order_id": format!("o-{}", n - 2), "amount_minor": 1000, "currency": "EUR", "region": region } }),
    }
}

async fn traffic(url: String, tenants: Vec<(String, String)>, market: Arc<Market>) {
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(EVENT_EVERY);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0u64.. {
        ticker.tick().await;
        let (tenant, token) = &tenants[(n % tenants.len() as u64) as usize];
        let sent = client.post(format!("{url}/v1/events")).bearer_auth(token).json(&next_event(n)).send().await;
        match sent {
            Ok(response) => {
                let receipt: Value = response.json().await.unwrap_or_default();
                for delivery in receipt["deliveries"].as_array().into_iter().flatten() {
                    let key = format!(
                        "{} {}",
                        delivery["plugin"].as_str().unwrap_or("?"),
                        delivery["outcome"].as_str().unwrap_or("?")
                    );
                    *outcomes.entry(key).or_default() += 1;
                }
            }
            Err(error) => tracing::warn!(%error, %tenant, "demo event not sent"),
        }
        if n % 20 == 19 {
            let recorded: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM invocations").fetch_one(&market.db.pool).await.unwrap_or(0);
            let tally: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("events sent {}, invocations recorded {recorded} — {}", n + 1, tally.join(", "));
            for totals in crate::billing::views::totals(&market).await.unwrap_or_default() {
                println!("  money {}: {}", totals.currency, totals.describe());
            }
        }
    }
}
