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

mod catalog;
mod history;
mod people;
mod reviews;
mod tenants;
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use nexus_registry::publishers::Issuer;

use self::history::{HISTORY_DAYS, history};
use self::people::{DemoPerson, seed_partner_tiers, seed_people};
use crate::accounts::{self, Caller};
use crate::billing::provider::Scripted;
use crate::billing::{DAY_MS, SandboxProvider, SystemClock};
use crate::market::Market;
use crate::server::{self, AppState, ServeConfig};

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
    reviews::seed(&market, &seeded).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {}: {e} (pass --listen 127.0.0.1:<free port>)", config.listen)
    })?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    let outbox = config.smtp_url.is_none().then(|| config.outbox());
    print_welcome(&url, &seeded, &people, outbox.as_deref());
    let traffic = tokio::spawn(traffic::traffic(url.clone(), seeded.tenants.clone(), market.clone()));
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

async fn seed(market: &Arc<Market>, sandbox: &SandboxProvider) -> anyhow::Result<Seeded> {
    let operator = accounts::issue_operator_token(&market.db, "demo", None, &Issuer::by("demo")).await?;
    let operator_caller = Caller::Operator { token_id: operator.id.to_string() };
    let (credential, publisher) = catalog::publish(market).await?;
    catalog::price(market, &credential, &operator_caller).await?;
    // initech's first card payment is declined; the next day's billing run collects it.
    sandbox.script(&"initech".parse()?, [Scripted::Refuse("card_declined".into())]);
    let featured = "nexus-labs/tax-calculator".parse()?;
    crate::co_marketing::feature(market, &operator_caller, &featured, Some("Launch partner: tax made simple")).await?;
    let (tenants, callers) = tenants::seed(market).await?;
    Ok(Seeded { operator: operator.secret, publisher, tenants, callers, operator_caller })
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
