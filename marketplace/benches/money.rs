//! Money paths on SQLite (data folder) and PostgreSQL (a throwaway cluster started for the
//! run; skipped with a note when it cannot start):
//!
//! - `ledger_post/<backend>/<n>_per_tx`: `ledger::post` of the 5-leg collection posting
//!   (platform cash, tenant receivable, unsettled sales, fee revenue, partner payable), `n`
//!   postings per `write_tx` transaction; criterion reports postings per second.
//! - The billing run: 10,000 usage-plan installs with 1,000,000 applied invocations (and their
//!   usage rows) in one monthly period, loaded with multi-row INSERTs (no plugin runs), then
//!   one `run::run` to the period's end (10,000 usage charges billed, then collected by the
//!   sandbox provider and split 80/20) and one `ledger::verify` of the result. A run is not
//!   repeatable on the same data (charges are unique by what they bill) and loading takes
//!   longer than the run, so this is measured once per backend outside criterion's sampling
//!   and printed (`billing run …`); the bench checks the run's counts and amounts and that
//!   every ledger invariant holds (`usage_hours` against the invocation rows among them). Then
//!   `usage_hours` rebuilt from the invocation rows (timed: what migration 0020 does to an
//!   existing database).
//!
//! - `partners`: 1,000 partners (a plugin, a monthly subscription plan in USD, EUR or GBP and
//!   a listing each), 100,000 tenants with 333,334 subscription installs, and 1,000,000
//!   collected charges over January to March 2026, each with its 'charge' and 'collection'
//!   ledger transactions (7 entries, built with `ledger::posting` as the domain builds them)
//!   and `partner_totals` summed from the charges, all loaded with multi-row INSERTs (no
//!   plugin or billing run; no payment attempt rows, which no read here uses), then the money
//!   rollups built from that ledger with `rollups::rebuild` (timed: what migrations 0014 and
//!   0015 do to an existing ledger). Then, each once: `statements::statements` for one
//!   partner's February and for all 1,000 partners' (in turn), `views::sales` of one partner's
//!   February, a `/metrics` scrape through the router (and, for comparison, its money gauges
//!   summed from the entries as before the rollups), a `payouts::run` paying all 1,000
//!   partners and a second one paying nothing, `gmv::gmv` by month and by currency, partner
//!   and plugin, `gmv::ecosystem` by month, and `ledger::verify` (every check must pass, the
//!   rollups' included). Payouts are not repeatable on the same data and the reads are one-off
//!   calls over minutes of loading, so these are printed timings, not criterion samples; the
//!   bench checks each result against totals kept while loading. `NEXUS_BENCH_CHARGES=100000`
//!   runs the scenario at a tenth of the size (any multiple of 100,000).
//!
//! Run: `cargo bench -p nexus-marketplace --bench money`; one scenario alone with its name
//! as the filter (`-- partners`, `-- billing_run`, `-- ledger_post`), one backend alone with
//! `NEXUS_BENCH_BACKEND=sqlite` (or `postgres`). Results: BENCHMARKS.md.

// Benchmarks report setup failures by panicking; the seeding of a scenario reads top to
// bottom, like a test (the 60-line rule is for the code measured).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_host::{Host, HostConfig};
use nexus_marketplace::accounts::Caller;
use nexus_marketplace::billing::gmv::{self, EcosystemQuery, GmvQuery, GroupBy};
use nexus_marketplace::billing::ledger::{self, Account, Head, Kind};
use nexus_marketplace::billing::plans::{self, PlanModel, PlanRequest, UsageTerms};
use nexus_marketplace::billing::share::{self, PolicyRequest, TierSpec};
use nexus_marketplace::billing::{
    BillingConfig, ManualClock, SandboxProvider, payouts, rollups, run, statements, views,
};
use nexus_marketplace::records::usage_hours;
use nexus_marketplace::secrets::MasterKey;
use nexus_marketplace::{Market, MarketConfig};
use nexus_money::Currency;
use nexus_money::ledger::Posting;
use nexus_money::period::{self, Interval};
use nexus_registry::{ArtifactStore, Db, PluginId, PublishRequest, Registry};

const INSTALLS: usize = 10_000;
const INVOCATIONS: usize = 1_000_000;
const PROGRESS_EVERY: usize = 100_000;
/// Rows per multi-row INSERT while loading; a transaction holds `PROGRESS_EVERY` rows.
const ROWS_PER_STATEMENT: usize = 1_000;
/// 2026-01-01T00:00:00Z: every install is anchored here, so its first period is January.
const ANCHOR_MS: i64 = 1_767_225_600_000;
/// The usage plan's price of one `events` unit, in USD cents.
const UNIT_MINOR: i64 = 2;
/// The platform's share under the bench's default policy (basis points).
const FEE_BP: i64 = 2_000;
/// Postings per database transaction in `ledger_post`.
const BATCHES: [u64; 2] = [1, 100];
const PLUGIN: &str = "nexus-labs/meter";

/// A marketplace on SQLite in `dir`, or on the PostgreSQL database `postgres`.
async fn open(postgres: Option<String>, dir: &Path, clock: Arc<ManualClock>) -> Arc<Market> {
    let (db, artifacts) = match postgres {
        Some(url) => {
            let db = Db::connect(&url).await.unwrap();
            (db.clone(), ArtifactStore::Db(db))
        }
        None => (Db::sqlite_in(dir).await.unwrap(), ArtifactStore::Dir(dir.join("artifacts"))),
    };
    let registry = Arc::new(Registry::with_publish_rate(db, artifacts, u32::MAX));
    let billing = BillingConfig::sandboxed(clock, Arc::new(SandboxProvider::default()));
    let config = MarketConfig {
        master_key: MasterKey::generate().unwrap(),
        host: Arc::new(Host::new(HostConfig::default()).unwrap()),
        tenant_limits: Default::default(),
        billing,
        event_compile_wait: nexus_marketplace::runner::EVENT_COMPILE_WAIT,
        mailer: nexus_marketplace::mail::Mailer::files(
            std::env::temp_dir().join("nexus-outbox"),
            nexus_marketplace::mail::Mailer::DEFAULT_FROM,
        )
        .unwrap(),
    };
    Arc::new(Market::open(registry, config).await.unwrap())
}

/// The throwaway PostgreSQL database, or why there is none.
fn postgres_url() -> Result<String, String> {
    std::panic::catch_unwind(|| nexus_testkit::Postgres::shared().fresh_database()).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// The backends to measure, each with a new database: SQLite always, PostgreSQL when its
/// cluster starts; only the one named by `NEXUS_BENCH_BACKEND` (`sqlite` or `postgres`) if set.
fn backends() -> Vec<(&'static str, Option<String>)> {
    let only = std::env::var("NEXUS_BENCH_BACKEND").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let mut out = Vec::new();
    if wanted("sqlite") {
        out.push(("sqlite", None));
    }
    if wanted("postgres") {
        match postgres_url() {
            Ok(url) => out.push(("postgres", Some(url))),
            Err(why) => eprintln!("skipping PostgreSQL: it could not start ({why})"),
        }
    }
    out
}

/// Whether the scenario `name` runs: with no filter argument (`cargo bench --bench money --
/// partners`) every scenario runs, with one only those it names. Criterion applies the same
/// filter to its own benchmarks; the one-off scenarios check it here. (An option's value is
/// taken for a filter: write `--sample-size=10`.)
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()) || f.contains(name))
}

/// splitmix64: distinct, evenly spread ids from a counter, as random ids are in production.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The collection of a charge of 100..=1099 cents from one of 1,000 tenants, 20% fee.
fn collection(n: u64) -> Posting {
    let amount = 100 + i64::try_from(n % 1_000).unwrap();
    let fee = amount * FEE_BP / 10_000;
    ledger::posting(
        Currency::from_code("USD").unwrap(),
        &[
            (Account::PlatformCash, amount),
            (Account::TenantReceivable(format!("bench-{:05}", n % 1_000)), -amount),
            (Account::PlatformUnsettledSales, amount),
            (Account::PlatformFeeRevenue, -fee),
            (Account::PartnerPayable("nexus-labs".into()), -(amount - fee)),
        ],
    )
    .unwrap()
}

fn ledger_post(c: &mut Criterion) {
    if !selected("ledger_post") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("ledger_post");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    for (backend, postgres) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let market = rt.block_on(open(postgres, dir.path(), Arc::new(ManualClock::at(ANCHOR_MS))));
        let posted = AtomicU64::new(0);
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch));
            group.bench_function(BenchmarkId::new(backend, format!("{batch}_per_tx")), |b| {
                b.to_async(&rt).iter(|| async {
                    let mut tx = market.db.write_tx().await.unwrap();
                    for _ in 0..batch {
                        let n = posted.fetch_add(1, Ordering::Relaxed);
                        let memo = format!("collected sandbox-{n}; fee under the default policy");
                        let head = Head {
                            kind: Kind::Collection,
                            charge: None,
                            refund: None,
                            payout: None,
                            adjustment: None,
                            idempotency: None,
                            memo,
                            at: 0,
                        };
                        ledger::post(&mut tx, head, &collection(n)).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                })
            });
        }
        // The postings name no charge, so only the structural invariants apply here.
        let report = rt.block_on(ledger::verify(&market)).unwrap();
        assert!(report.checks[..2].iter().all(|check| check.ok), "{:?}", report.checks);
        eprintln!("  {backend}: {} transactions, {} entries, all balanced", report.transactions, report.entries);
    }
    group.finish();
}

/// Runs `rows` as multi-row INSERTs of `ROWS_PER_STATEMENT` into `into` (`table (columns)`).
async fn insert_rows(conn: &mut sqlx::AnyConnection, into: &str, rows: impl Iterator<Item = String>) {
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let values: Vec<String> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = format!("INSERT INTO {into} VALUES {}", values.join(","));
        sqlx::raw_sql(&sql).execute(&mut *conn).await.unwrap();
    }
}

fn tenant(i: usize) -> String {
    format!("bench-{i:05}")
}

fn install(i: usize) -> String {
    format!("ins_{:016x}", mix(i as u64 ^ 0x5eed))
}

/// The units invocation `n` reports (1 to 3).
fn units(n: usize) -> i64 {
    1 + i64::try_from(n % 3).unwrap()
}

/// The published plugin, its usage plan, a 20% default share policy, then the tenants,
/// installs, invocations and usage rows in bulk. Returns the period's end and the total the
/// run must charge.
async fn seed(market: &Arc<Market>) -> (i64, i64) {
    let started = Instant::now();
    let token = market.registry.create_publisher(&"nexus-labs".parse().unwrap(), "Nexus Labs", "bench").await.unwrap();
    let publisher = market.registry.authenticate(&token.secret).await.unwrap();
    let manifest = format!(
        "id = \"{PLUGIN}\"\nversion = \"1.0.0\"\nsummary = \"Counts events\"\ndescription = \"Bills per event.\"\n\
         categories = [\"billing\"]\nlicense = \"Apache-2.0\"\ncontract = \"1.0\"\nevent-types = [\"*\"]\n\n\
         [capabilities.config]\nreason = \"Reads its settings\"\n\n[[pricing]]\nid = \"free\"\nname = \"Free\"\nmodel = \"free\"\n"
    );
    let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
    let request = PublishRequest { manifest, component, claimed_digest: None, signature: None };
    let published = market.publish(&publisher, request).await.unwrap();
    let plugin: PluginId = PLUGIN.parse().unwrap();
    let usage = UsageTerms { meter: "events".into(), unit_minor: UNIT_MINOR, included_units: 0, cap_minor: None };
    let plan = PlanRequest {
        key: "metered".into(),
        name: "Metered".into(),
        model: PlanModel::Usage,
        currency: Some("USD".into()),
        price_minor: 0,
        interval: Some(Interval::Month),
        trial_days: 0,
        usage: Some(usage),
    };
    let plan = plans::put(market, &Caller::Publisher(publisher), &plugin, plan).await.unwrap();
    let operator = Caller::Operator { token_id: "bench".into() };
    let policy = PolicyRequest {
        publisher: None,
        plugin: None,
        plan: None,
        tiers: vec![TierSpec { up_to: None, rate_bp: FEE_BP }],
        effective_from: None,
    };
    share::put(market, &operator, policy).await.unwrap();
    let (_, january) = period::period_containing(ANCHOR_MS, Interval::Month, ANCHOR_MS).unwrap();
    let period_end = january.end_ms;

    let mut tx = market.db.write_tx().await.unwrap();
    let at = ANCHOR_MS;
    insert_rows(
        &mut tx,
        "tenants (id, display_name, created_at)",
        (0..INSTALLS).map(|i| format!("('{}', 'Bench tenant {i}', {at})", tenant(i))),
    )
    .await;
    // The billing columns as `run::start_install` sets them for a usage plan.
    let (version, digest, plan_id) = (&published.version, published.digest.to_string(), &plan.id);
    insert_rows(
        &mut tx,
        "installs (id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, config, \
         secret_names, status, created_at, updated_at, plan_id, billing_anchor, paid_through, usage_billed_until, \
         next_bill_at)",
        (0..INSTALLS).map(|i| {
            format!(
                "('{}', '{}', '{PLUGIN}', '*', '{version}', '{digest}', '[\"*\"]', \
                 '{{\"capabilities\":[\"config\"],\"allowed_hosts\":[]}}', 'metered', '{{}}', '[]', 'active', {at}, {at}, \
                 '{plan_id}', {at}, NULL, {at}, {at})",
                install(i),
                tenant(i)
            )
        }),
    )
    .await;
    tx.commit().await.unwrap();
    eprintln!("  {INSTALLS} tenants and installs in {:.1?}", started.elapsed());

    // Invocation n belongs to install n % INSTALLS and starts n / INVOCATIONS of the way
    // through January: installs interleave in time as they would.
    let step = (period_end - ANCHOR_MS) / INVOCATIONS as i64;
    for chunk in 0..INVOCATIONS / PROGRESS_EVERY {
        let range = chunk * PROGRESS_EVERY..(chunk + 1) * PROGRESS_EVERY;
        let mut tx = market.db.write_tx().await.unwrap();
        for part in range.step_by(ROWS_PER_STATEMENT) {
            let rows = part..part + ROWS_PER_STATEMENT;
            insert_rows(
                &mut tx,
                "invocations (id, tenant_id, install_id, plugin_id, version, event_id, event_type, started_at, \
                 duration_us, outcome, error_message, fuel_used, peak_memory_bytes, http_requests, kv_writes, denials, usage)",
                rows.clone().map(|n| {
                    let i = n % INSTALLS;
                    format!(
                        "('inv_{:020x}', '{}', '{}', '{PLUGIN}', '{version}', 'evt_{n}', 'bench.ping', {}, 120, 'ok', NULL, \
                         5000, 1114112, 0, 0, 0, '{{\"events\":{}}}')",
                        mix(n as u64),
                        tenant(i),
                        install(i),
                        ANCHOR_MS + n as i64 * step,
                        units(n)
                    )
                }),
            )
            .await;
            insert_rows(
                &mut tx,
                "invocation_usage (invocation_id, meter, units)",
                rows.clone().map(|n| format!("('inv_{:020x}', 'events', {})", mix(n as u64), units(n))),
            )
            .await;
            // Their hours, as the invocation writer adds them in the same transaction (an
            // install's invocations are 7.4 hours apart here: one row each, in time order).
            insert_rows(
                &mut tx,
                "usage_hours (install_id, meter, hour_start, units)",
                rows.map(|n| {
                    let hour = usage_hours::hour_of(ANCHOR_MS + n as i64 * step);
                    format!("('{}', 'events', {hour}, {})", install(n % INSTALLS), units(n))
                }),
            )
            .await;
        }
        tx.commit().await.unwrap();
        eprintln!("  {} of {INVOCATIONS} invocations in {:.1?}", (chunk + 1) * PROGRESS_EVERY, started.elapsed());
    }
    if market.db.backend == nexus_registry::Backend::Postgres {
        // Autovacuum would analyze the bulk load soon after; plan the run on the same
        // statistics it would have.
        sqlx::raw_sql("ANALYZE").execute(&market.db.pool).await.unwrap();
    }
    let expected = (0..INVOCATIONS).map(units).sum::<i64>() * UNIT_MINOR;
    (period_end, expected)
}

fn billing_run(_: &mut Criterion) {
    if !selected("billing_run") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for (backend, postgres) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(ANCHOR_MS));
        let market = rt.block_on(open(postgres, dir.path(), clock.clone()));
        eprintln!("seeding {INSTALLS} installs and {INVOCATIONS} invocations on {backend}");
        let (period_end, expected) = rt.block_on(seed(&market));
        clock.set(period_end);

        let started = Instant::now();
        let report = rt.block_on(run::run(&market, period_end)).unwrap();
        let took = started.elapsed();
        assert_eq!(
            (report.installs_billed, report.charges_created, report.collected, report.declined),
            (INSTALLS as u64, INSTALLS as u64, INSTALLS as u64, 0)
        );
        assert_eq!(report.charged.get("USD"), Some(&expected));
        println!(
            "billing run/{backend}: {took:.2?} for {INSTALLS} installs, {INVOCATIONS} invocations \
             ({:.0} installs/s, {} charged and collected)",
            INSTALLS as f64 / took.as_secs_f64(),
            expected
        );

        let started = Instant::now();
        let verified = rt.block_on(ledger::verify(&market)).unwrap();
        let took = started.elapsed();
        assert!(verified.ok, "{:?}", verified.checks);
        assert_eq!((verified.transactions, verified.entries), (2 * INSTALLS as i64, 7 * INSTALLS as i64));
        println!(
            "ledger verify/{backend}: {took:.2?} for {} transactions, {} entries",
            verified.transactions, verified.entries
        );

        let rebuild = async {
            let mut tx = market.db.write_tx().await.unwrap();
            let rows = usage_hours::rebuild(&mut tx, market.db.backend).await.unwrap();
            tx.commit().await.unwrap();
            rows
        };
        let (rows, _) = rt.block_on(timed(format!("usage_hours rebuild/{backend}"), rebuild));
        assert_eq!(rows, INVOCATIONS as i64);
    }
}

// The partners scenario: 1,000 partners over 1,000,000 collected charges.

const PARTNERS: usize = 1_000;
/// Collected charges: 1,000,000, or `NEXUS_BENCH_CHARGES` (a multiple of 100,000).
static CHARGES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    let charges: usize = std::env::var("NEXUS_BENCH_CHARGES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    assert!(
        charges > 0 && charges.is_multiple_of(PROGRESS_EVERY),
        "NEXUS_BENCH_CHARGES is a multiple of {PROGRESS_EVERY}"
    );
    charges
});
const MONTHS: usize = 3;
/// Monthly subscriptions, each charged in each of the three months (the last month two
/// short, so that the charges come to `CHARGES`).
fn subscriptions() -> usize {
    CHARGES.div_ceil(MONTHS)
}
/// Tenants, each subscribed to up to four partners' plugins (a tenth as many per 100,000
/// charges as at 1,000,000).
fn tenants() -> usize {
    *CHARGES / 10
}
const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const DAY_MS: i64 = 86_400_000;
/// Subscriptions are anchored over the first 28 days of January, so that every anniversary
/// falls in its own month.
const ANCHOR_SPREAD_MS: i64 = 28 * DAY_MS;
/// A charge is collected this long after it is billed (in the same billing run).
const COLLECTED_AFTER_MS: i64 = 2_000;
/// The month whose statements are read.
const STATEMENT_MONTH: &str = "2026-02";
const PLAN_KEY: &str = "pro";

fn partner(p: usize) -> String {
    format!("partner-{p:04}")
}

fn partner_plugin(p: usize) -> String {
    format!("partner-{p:04}/tool")
}

fn partner_plan(p: usize) -> String {
    format!("pln_{:016x}", mix(p as u64 ^ 0x91a2))
}

fn partner_currency(p: usize) -> &'static str {
    CURRENCIES[p % CURRENCIES.len()]
}

/// The monthly price of partner `p`'s plan: 5.00 to 49.99.
fn partner_price(p: usize) -> i64 {
    500 + i64::try_from(mix(p as u64) % 4_500).unwrap()
}

/// Subscription `s`: its tenant and partner (a tenant's subscriptions are to distinct
/// partners, as one live install per plugin allows) and its anchor.
fn subscription(s: usize) -> (usize, usize, i64) {
    let tenant = s % tenants();
    let partner = (tenant + s / tenants()) % PARTNERS;
    let anchor = ANCHOR_MS + i64::try_from(s).unwrap() * ANCHOR_SPREAD_MS / subscriptions() as i64;
    (tenant, partner, anchor)
}

fn subscription_install(s: usize) -> String {
    format!("ins_{:016x}", mix(s as u64 ^ 0xfeed))
}

/// Charge `n`: subscription `n % subscriptions()` in its month `n / subscriptions()`, billed at
/// the period's start and collected right after, 20% to the platform. In `n` order the
/// charges are in time order.
struct Sale {
    n: usize,
    id: String,
    install: String,
    tenant: String,
    partner: usize,
    start: i64,
    end: i64,
    collected_at: i64,
    amount: i64,
    fee: i64,
}

fn sale(n: usize) -> Sale {
    let s = n % subscriptions();
    let (tenant, partner, anchor) = subscription(s);
    let month = u32::try_from(n / subscriptions()).unwrap();
    let period = period::period_at(anchor, Interval::Month, month).unwrap();
    let amount = partner_price(partner);
    Sale {
        n,
        id: format!("chg_{:016x}", mix(n as u64 ^ 0xc4a6)),
        install: subscription_install(s),
        tenant: tenant_name(tenant),
        partner,
        start: period.start_ms,
        end: period.end_ms,
        collected_at: period.start_ms + COLLECTED_AFTER_MS,
        amount,
        fee: amount * FEE_BP / 10_000,
    }
}

fn tenant_name(t: usize) -> String {
    format!("tenant-{t:06}")
}

impl Sale {
    fn charge_row(&self) -> String {
        let p = self.partner;
        format!(
            "('{}', '{}', '{}', '{}', '{}', '{}', 'subscription', {}, {}, '{}', {}, \
             '{{\"plan_key\":\"{PLAN_KEY}\",\"plan_revision\":1,\"plan_name\":\"Pro\",\"model\":\"subscription\",\"price_minor\":{}}}', \
             'collected', 1, NULL, NULL, {}, 0, 0, {}, {})",
            self.id,
            self.install,
            self.tenant,
            partner_plugin(p),
            partner(p),
            partner_plan(p),
            self.start,
            self.end,
            partner_currency(p),
            self.amount,
            self.amount,
            self.fee,
            self.start,
            self.collected_at
        )
    }

    /// The ids of its 'charge' and 'collection' transactions.
    fn transaction_ids(&self) -> [String; 2] {
        let n = self.n as u64;
        [0, 1].map(|k| format!("ltx_{:016x}", mix((n << 1 | k) ^ 0x1d9e)))
    }

    /// Its two ledger transactions as `charges::insert` and `collect` post them.
    fn transaction_rows(&self) -> [String; 2] {
        let [billed, collected] = self.transaction_ids();
        let p = self.partner;
        [
            format!(
                "('{billed}', 'charge', '{}', '{PLAN_KEY} subscription of {} for {}', {})",
                self.id,
                partner_plugin(p),
                self.install,
                self.start
            ),
            format!(
                "('{collected}', 'collection', '{}', 'collected sandbox-{}; fee {} under the default policy', {})",
                self.id,
                self.n + 1,
                self.fee,
                self.collected_at
            ),
        ]
    }

    /// The entries of both transactions, built with `ledger::posting` as the domain does.
    fn entry_rows(&self) -> Vec<String> {
        let currency = Currency::from_code(partner_currency(self.partner)).unwrap();
        let tenant = Account::TenantReceivable(self.tenant.clone());
        let (amount, fee) = (self.amount, self.fee);
        let billed = ledger::posting(currency, &[(tenant.clone(), amount), (Account::PlatformUnsettledSales, -amount)]);
        let collected = ledger::posting(
            currency,
            &[
                (Account::PlatformCash, amount),
                (tenant, -amount),
                (Account::PlatformUnsettledSales, amount),
                (Account::PlatformFeeRevenue, -fee),
                (Account::PartnerPayable(partner(self.partner)), -(amount - fee)),
            ],
        );
        let mut rows = Vec::with_capacity(7);
        for (id, posting) in self.transaction_ids().iter().zip([billed.unwrap(), collected.unwrap()]) {
            for (leg, entry) in posting.entries().iter().enumerate() {
                rows.push(format!(
                    "('{id}', {leg}, '{}', '{}', {})",
                    entry.account,
                    entry.amount.currency.code(),
                    entry.amount.minor
                ));
            }
        }
        rows
    }
}

/// What the reads must find, summed while loading.
#[derive(Default)]
struct Expected {
    /// Gross collected by month (`YYYY-MM`) and currency.
    gross: BTreeMap<(String, String), i64>,
    /// The partners' shares by currency: what the payout run pays.
    shares: BTreeMap<String, i64>,
}

/// Partners with a plugin, a plan and a listing each; tenants; subscription installs.
async fn seed_catalog(market: &Market) {
    let at = ANCHOR_MS - 30 * DAY_MS;
    let mut tx = market.db.write_tx().await.unwrap();
    insert_rows(
        &mut tx,
        "publishers (name, display_name, created_at)",
        (0..PARTNERS).map(|p| format!("('{}', 'Partner {p}', {at})", partner(p))),
    )
    .await;
    insert_rows(
        &mut tx,
        "plugins (id, publisher, created_at)",
        (0..PARTNERS).map(|p| format!("('{}', '{}', {at})", partner_plugin(p), partner(p))),
    )
    .await;
    insert_rows(
        &mut tx,
        "plans (id, plugin_id, plan_key, revision, name, model, currency, price_minor, billing_interval, trial_days, \
         meter, unit_minor, included_units, cap_minor, created_by, created_at, retired_at)",
        (0..PARTNERS).map(|p| {
            format!(
                "('{}', '{}', '{PLAN_KEY}', 1, 'Pro', 'subscription', '{}', {}, 'month', 0, NULL, NULL, NULL, NULL, \
                 'publisher:{}', {at}, NULL)",
                partner_plan(p),
                partner_plugin(p),
                partner_currency(p),
                partner_price(p),
                partner(p)
            )
        }),
    )
    .await;
    let mut installs = vec![0i64; PARTNERS];
    (0..subscriptions()).for_each(|s| installs[subscription(s).1] += 1);
    insert_rows(
        &mut tx,
        "listings (plugin_id, publisher, name, summary, description, categories, capabilities, pricing_models, \
         latest_version, search_text, install_count, created_at, updated_at)",
        (0..PARTNERS).map(|p| {
            format!(
                "('{}', '{}', 'Tool {p}', 'A tool', 'A partner tool.', ',billing,', ',config,', ',subscription,', \
                 '1.0.0', 'tool {p}', {}, {at}, {at})",
                partner_plugin(p),
                partner(p),
                installs[p]
            )
        }),
    )
    .await;
    insert_rows(
        &mut tx,
        "tenants (id, display_name, created_at)",
        (0..tenants()).map(|t| format!("('{}', 'Tenant {t}', {at})", tenant_name(t))),
    )
    .await;
    // Paid through the last period charged, as `run::bill_install` leaves them.
    let digest = format!("sha256:{}", "0".repeat(64));
    insert_rows(
        &mut tx,
        "installs (id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, config, \
         secret_names, status, created_at, updated_at, plan_id, billing_anchor, paid_through, usage_billed_until, \
         next_bill_at)",
        (0..subscriptions()).map(|s| {
            let (tenant, p, anchor) = subscription(s);
            let periods = (0..MONTHS).filter(|k| k * subscriptions() + s < *CHARGES).count();
            let paid_through = period::period_at(anchor, Interval::Month, u32::try_from(periods).unwrap()).unwrap();
            format!(
                "('{}', '{}', '{}', '*', '1.0.0', '{digest}', '[\"*\"]', \
                 '{{\"capabilities\":[\"config\"],\"allowed_hosts\":[]}}', '{PLAN_KEY}', '{{}}', '[]', 'active', \
                 {anchor}, {anchor}, '{}', {anchor}, {paid}, NULL, {paid})",
                subscription_install(s),
                tenant_name(tenant),
                partner_plugin(p),
                partner_plan(p),
                paid = paid_through.start_ms,
            )
        }),
    )
    .await;
    tx.commit().await.unwrap();
}

/// The catalog, then the charges with their ledger transactions in 100,000-charge database
/// transactions, then `partner_totals` from the charges.
async fn seed_partners(market: &Market) -> Expected {
    let started = Instant::now();
    seed_catalog(market).await;
    eprintln!(
        "  {PARTNERS} partners, {} tenants and {} installs in {:.1?}",
        tenants(),
        subscriptions(),
        started.elapsed()
    );
    let mut expected = Expected::default();
    for chunk in 0..*CHARGES / PROGRESS_EVERY {
        let mut tx = market.db.write_tx().await.unwrap();
        for part in (chunk * PROGRESS_EVERY..(chunk + 1) * PROGRESS_EVERY).step_by(ROWS_PER_STATEMENT) {
            let sales: Vec<Sale> = (part..part + ROWS_PER_STATEMENT).map(sale).collect();
            for s in &sales {
                let currency = partner_currency(s.partner).to_string();
                *expected.gross.entry((period::month_label(s.collected_at), currency.clone())).or_default() += s.amount;
                *expected.shares.entry(currency).or_default() += s.amount - s.fee;
            }
            insert_rows(
                &mut tx,
                "charges (id, install_id, tenant_id, plugin_id, publisher, plan_id, line, period_start, period_end, \
                 currency, amount_minor, detail, status, attempts, next_attempt_at, claimed_until, fee_minor, \
                 refunded_minor, fee_refunded_minor, created_at, collected_at)",
                sales.iter().map(Sale::charge_row),
            )
            .await;
            insert_rows(
                &mut tx,
                "ledger_transactions (id, kind, charge_id, memo, posted_at)",
                sales.iter().flat_map(Sale::transaction_rows),
            )
            .await;
            insert_rows(
                &mut tx,
                "ledger_entries (transaction_id, leg, account, currency, amount_minor)",
                sales.iter().flat_map(Sale::entry_rows),
            )
            .await;
        }
        tx.commit().await.unwrap();
        eprintln!(
            "  {} of {} charges, with their ledger transactions, in {:.1?}",
            (chunk + 1) * PROGRESS_EVERY,
            *CHARGES,
            started.elapsed()
        );
    }
    sqlx::raw_sql(
        "INSERT INTO partner_totals (publisher, currency, lifetime_gross_minor) \
         SELECT publisher, currency, SUM(amount_minor) FROM charges WHERE status = 'collected' GROUP BY publisher, currency",
    )
    .execute(market.db.writer())
    .await
    .unwrap();
    eprintln!("  loaded in {:.1?}", started.elapsed());
    // The ledger was written behind `ledger::post`'s back: build its rollups as migrations 0014
    // and 0015 do for an existing ledger.
    let (rebuilt, _) = timed(format!("rollups rebuild/{}", backend_name(market)), rollups::rebuild(market)).await;
    let rebuilt = rebuilt.unwrap();
    println!(
        "  {} rollup rows, {} partner balances, {} statement index rows",
        rebuilt.rollup_rows, rebuilt.balance_rows, rebuilt.partner_entries
    );
    if market.db.backend == nexus_registry::Backend::Postgres {
        sqlx::raw_sql("ANALYZE").execute(&market.db.pool).await.unwrap();
    }
    expected
}

fn backend_name(market: &Market) -> &'static str {
    match market.db.backend {
        nexus_registry::Backend::Sqlite => "sqlite",
        nexus_registry::Backend::Postgres => "postgres",
    }
}

/// Runs `f` once and prints how long it took under `label`.
async fn timed<T>(label: String, f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    let took = started.elapsed();
    println!("{label}: {took:.2?}");
    (out, took)
}

async fn partner_statements(market: &Market, backend: &str, expected: &Expected) {
    let operator = Caller::Operator { token_id: "bench".into() };
    let label = format!("statement/{backend}: one partner, {STATEMENT_MONTH}");
    let (one, _) = timed(label, statements::statements(market, &operator, &partner(0), STATEMENT_MONTH, None)).await;
    let one = one.unwrap();
    assert_eq!(one.len(), 1);
    println!("  {} lines, {} {} of sales", one[0].lines.len(), one[0].sales_minor, one[0].currency);
    let all = async {
        let mut sales: BTreeMap<String, i64> = BTreeMap::new();
        let mut lines = 0;
        for p in 0..PARTNERS {
            for s in statements::statements(market, &operator, &partner(p), STATEMENT_MONTH, None).await.unwrap() {
                *sales.entry(s.currency.to_string()).or_default() += s.sales_minor;
                lines += s.lines.len();
            }
        }
        (sales, lines)
    };
    let ((sales, lines), took) =
        timed(format!("statements/{backend}: all {PARTNERS} partners, {STATEMENT_MONTH}"), all).await;
    println!("  {lines} lines, {:.2?} per partner", took / PARTNERS as u32);
    let february =
        expected.gross.iter().filter(|((month, _), _)| month == STATEMENT_MONTH).map(|((_, c), v)| (c.clone(), *v));
    assert_eq!(sales, february.collect::<BTreeMap<_, _>>());
}

/// One partner's sales in February, and a `/metrics` scrape (its money gauges included)
/// through the router.
async fn partner_sales_and_metrics(market: &Arc<Market>, backend: &str, expected: &Expected) {
    let operator = Caller::Operator { token_id: "bench".into() };
    let label = format!("sales/{backend}: one partner, {STATEMENT_MONTH}");
    let (sales, _) = timed(label, views::sales(market, &operator, &partner(0), Some(STATEMENT_MONTH))).await;
    let sales = sales.unwrap();
    assert_eq!((sales.rows.len(), sales.balances.len()), (1, 1));
    let router = nexus_marketplace::server::app(nexus_marketplace::server::AppState {
        market: market.clone(),
        public_url: "http://bench.test".into(),
    });
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap();
    let scrape = async { tower::ServiceExt::oneshot(router, request).await.unwrap() };
    let (answer, _) = timed(format!("metrics/{backend}: one /metrics scrape"), scrape).await;
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    // Before the rollups, the scrape summed every entry for its money gauges: the same query,
    // timed for comparison and checked against what the rollups say.
    let from_entries = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT e.currency, \
         CAST(SUM(CASE WHEN t.kind = 'collection' AND e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN e.account = 'platform:fee-revenue' THEN -e.amount_minor ELSE 0 END) AS BIGINT) \
         FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id GROUP BY e.currency ORDER BY e.currency",
    )
    .fetch_all(&market.db.pool);
    let (summed, _) =
        timed(format!("metrics/{backend}: the money gauges summed from the entries, as before"), from_entries).await;
    let totals = views::totals(market).await.unwrap();
    let from_rollups: Vec<(String, i64, i64)> =
        totals.into_iter().map(|t| (t.currency.to_string(), t.gmv_minor, t.fees_minor)).collect();
    assert_eq!(summed.unwrap(), from_rollups);
    for (currency, gross) in expected.gross.iter().fold(BTreeMap::<&str, i64>::new(), |mut all, ((_, c), v)| {
        *all.entry(c.as_str()).or_default() += v;
        all
    }) {
        let line = format!("nexus_gmv_minor{{currency=\"{currency}\"}} {gross}");
        assert!(text.lines().any(|l| l == line), "no {line} in /metrics");
    }
}

async fn partner_payouts(market: &Market, backend: &str, expected: &Expected, at: i64) {
    let (report, _) = timed(format!("payout run/{backend}: pays {PARTNERS} partners"), payouts::run(market, at)).await;
    let report = report.unwrap();
    assert_eq!((report.paid, report.failed, report.pending), (PARTNERS as u64, 0, 0));
    assert_eq!(report.paid_minor, expected.shares);
    let (again, _) = timed(format!("payout run/{backend}: pays nothing"), payouts::run(market, at)).await;
    let again = again.unwrap();
    assert_eq!((again.paid, again.carried_forward.len()), (0, 0));
}

async fn partner_metrics(market: &Market, backend: &str, expected: &Expected, to: i64) {
    let operator = Caller::Operator { token_id: "bench".into() };
    for by in [GroupBy::Currency, GroupBy::Partner, GroupBy::Plugin] {
        let query = GmvQuery {
            interval: Some(gmv::Interval::Month),
            by: Some(by),
            from: Some(ANCHOR_MS),
            to: Some(to),
            ..GmvQuery::default()
        };
        let (out, _) = timed(format!("gmv/{backend}: by month and {by:?}"), gmv::gmv(market, &operator, &query)).await;
        let out = out.unwrap();
        let mut gross: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in &out.rows {
            *gross.entry((row.period[..7].to_string(), row.currency.to_string())).or_default() += row.gmv_minor;
        }
        assert_eq!(gross, expected.gross);
        println!("  {} rows", out.rows.len());
    }
    let query = EcosystemQuery { interval: Some(gmv::Interval::Month), from: Some(ANCHOR_MS), to: Some(to) };
    let (periods, _) = timed(format!("ecosystem/{backend}: by month"), gmv::ecosystem(market, &operator, &query)).await;
    let periods = periods.unwrap();
    assert_eq!(periods.len(), MONTHS);
    assert!(periods.iter().all(|p| p.active_partners == PARTNERS as i64), "{periods:?}");
}

fn partners(_: &mut Criterion) {
    if !selected("partners") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let april = period::parse_month("2026-04").unwrap().start_ms;
    // The payouts of the first half of April, the day after the three months.
    let payout_at = april + DAY_MS;
    for (backend, postgres) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let market = rt.block_on(open(postgres, dir.path(), Arc::new(ManualClock::at(payout_at))));
        eprintln!("seeding {PARTNERS} partners and {} collected charges on {backend}", *CHARGES);
        let expected = rt.block_on(seed_partners(&market));
        rt.block_on(partner_statements(&market, backend, &expected));
        rt.block_on(partner_sales_and_metrics(&market, backend, &expected));
        rt.block_on(partner_payouts(&market, backend, &expected, payout_at));
        rt.block_on(partner_metrics(&market, backend, &expected, april));
        let (verified, _) = rt.block_on(timed(format!("ledger verify/{backend}"), ledger::verify(&market)));
        let verified = verified.unwrap();
        assert!(verified.ok, "{:?}", verified.checks);
        println!("  verify reports {} ms over {} checks", verified.elapsed_ms, verified.checks.len());
        let (transactions, entries) = (2 * (*CHARGES + PARTNERS), 7 * *CHARGES + 4 * PARTNERS);
        assert_eq!((verified.transactions, verified.entries), (transactions as i64, entries as i64));
        println!("  {transactions} transactions, {entries} entries");
    }
}

criterion_group!(benches, ledger_post, billing_run, partners);
criterion_main!(benches);
