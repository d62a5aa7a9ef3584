//! Catalog search latency with 10,000 listings, on SQLite (data folder) and PostgreSQL (a
//! throwaway cluster started for the run; skipped with a note when it cannot start): the
//! first page by popularity, a one-term query, a two-term query with a category, a query
//! matching every listing ranked by relevance, and page 50. Then the web console's catalog
//! page over the same 10,000 listings (the whole request through the router: query, template,
//! HTML), and the SVG chart of a year of daily figures.
//! Run: `cargo bench -p nexus-marketplace --bench catalog`. Results: BENCHMARKS.md.

// Benchmarks report setup failures by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nexus_host::{Host, HostConfig};
use nexus_marketplace::catalog::{self, SearchQuery, Sort};
use nexus_marketplace::secrets::MasterKey;
use nexus_marketplace::{Market, MarketConfig};
use nexus_registry::manifest::CATEGORIES;
use nexus_registry::{ArtifactStore, Db, PublishRequest, Registry};

const LISTINGS: usize = 10_000;
const PROGRESS_EVERY: usize = 1_000;

const VERBS: [&str; 8] = ["Sync", "Route", "Track", "Summarize", "Validate", "Enrich", "Archive", "Forward"];
const WORDS: [&str; 40] = [
    "invoice",
    "ledger",
    "refund",
    "ticket",
    "signup",
    "order",
    "payment",
    "report",
    "alert",
    "webhook",
    "email",
    "sms",
    "chat",
    "tax",
    "region",
    "currency",
    "discount",
    "coupon",
    "subscription",
    "trial",
    "churn",
    "forecast",
    "audit",
    "export",
    "import",
    "backup",
    "metric",
    "dashboard",
    "survey",
    "feedback",
    "lead",
    "contact",
    "campaign",
    "inventory",
    "shipment",
    "receipt",
    "payout",
    "dispute",
    "fraud",
    "consent",
];
const PRICING: [&str; 3] = [
    "id = \"free\"\nname = \"Free\"\nmodel = \"free\"",
    "id = \"pro\"\nname = \"Pro\"\nmodel = \"subscription\"\nprice = \"19.00\"\ncurrency = \"USD\"\ninterval = \"month\"",
    "id = \"metered\"\nname = \"Metered\"\nmodel = \"usage\"\nmeter = \"events\"\nunit-price = \"0.01\"\n\
     currency = \"EUR\"",
];

fn word(n: usize) -> &'static str {
    WORDS[n % WORDS.len()]
}

/// Plugin `n`: `tool-<n>` with a summary and description of list words, one or two
/// categories in turn, a pricing model in turn. The echo component imports `config`, which
/// `config` or `secrets` covers.
fn manifest(n: usize) -> String {
    let summary = format!(
        "{} {} and {} events for {} teams",
        VERBS[n % VERBS.len()],
        word(n),
        word(n / WORDS.len() + 7),
        word(n * 17 + 5)
    );
    let description = format!("Handles {} events and keeps a {} log.", word(n / 7 + 3), word(n / 3 + 11));
    let first = CATEGORIES[n % CATEGORIES.len()];
    let second = CATEGORIES[(n / CATEGORIES.len() + 1) % CATEGORIES.len()];
    let categories = if first == second { format!("{first:?}") } else { format!("{first:?}, {second:?}") };
    let capability = if n.is_multiple_of(3) { "secrets" } else { "config" };
    format!(
        "id = \"nexus-labs/tool-{n}\"\nversion = \"1.0.{patch}\"\nsummary = {summary:?}\n\
         description = {description:?}\ncategories = [{categories}]\nlicense = \"Apache-2.0\"\n\
         contract = \"1.0\"\nevent-types = [\"*\"]\n\n[capabilities.{capability}]\nreason = \"Reads its settings\"\n\n\
         [[pricing]]\n{pricing}\n",
        patch = n % 5,
        pricing = PRICING[n % PRICING.len()],
    )
}

/// A marketplace with `LISTINGS` published plugins and varied install counts.
async fn seeded(postgres: Option<String>, dir: &std::path::Path) -> Arc<Market> {
    let (db, artifacts) = match postgres.clone() {
        Some(url) => {
            let db = Db::connect(&url).await.unwrap();
            (db.clone(), ArtifactStore::Db(db))
        }
        None => (Db::sqlite_in(dir).await.unwrap(), ArtifactStore::Dir(dir.join("artifacts"))),
    };
    let registry = Arc::new(Registry::with_publish_rate(db, artifacts, u32::MAX));
    let config = MarketConfig {
        master_key: MasterKey::generate().unwrap(),
        host: Arc::new(Host::new(HostConfig::default()).unwrap()),
        tenant_limits: Default::default(),
        billing: Default::default(),
        event_compile_wait: nexus_marketplace::runner::EVENT_COMPILE_WAIT,
        mailer: nexus_marketplace::mail::Mailer::files(
            std::env::temp_dir().join("nexus-outbox"),
            nexus_marketplace::mail::Mailer::DEFAULT_FROM,
        )
        .unwrap(),
    };
    let market = Arc::new(Market::open(registry, config).await.unwrap());
    let token = market.registry.create_publisher(&"nexus-labs".parse().unwrap(), "Nexus Labs", "bench").await.unwrap();
    let publisher = market.registry.authenticate(&token.secret).await.unwrap();
    let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
    let started = Instant::now();
    for n in 0..LISTINGS {
        let request = PublishRequest {
            manifest: manifest(n),
            component: component.clone(),
            claimed_digest: None,
            signature: None,
        };
        market.publish(&publisher, request).await.unwrap();
        // Installs through the API would take longer than the publishing; only the count
        // matters to search.
        let installs = i64::try_from((n * 7919) % 1000).unwrap();
        catalog::count_install(market.db.writer(), &format!("nexus-labs/tool-{n}"), installs).await.unwrap();
        if (n + 1).is_multiple_of(PROGRESS_EVERY) {
            eprintln!("  published {} of {LISTINGS} listings in {:.0?}", n + 1, started.elapsed());
        }
    }
    // Ratings for the ranking and `top_rated`: up to 39 reviews, averages of 1 to 5 stars.
    sqlx::query(
        "UPDATE listings SET rating_count = install_count % 40, \
         rating_total = (install_count % 40) * (1 + install_count % 5)",
    )
    .execute(market.db.writer())
    .await
    .unwrap();
    if postgres.is_some() {
        // Each listing was written twice (the publish, the install count), leaving 10,000
        // dead rows; measure the steady state autovacuum reaches, not the first case after a
        // bulk load.
        sqlx::query("VACUUM ANALYZE listings").execute(&market.db.pool).await.unwrap();
    }
    market
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

fn cases() -> Vec<(&'static str, SearchQuery)> {
    vec![
        ("popular_first_page", SearchQuery::default()),
        ("one_term", SearchQuery { q: Some("ledger".into()), ..SearchQuery::default() }),
        (
            "two_terms_category",
            SearchQuery {
                q: Some("invoice refund".into()),
                category: Some("billing".into()),
                ..SearchQuery::default()
            },
        ),
        // Every listing's name holds `tool`: all 10,000 are scored.
        (
            "relevance_all_match",
            SearchQuery { q: Some("tool".into()), sort: Some(Sort::Relevance), ..Default::default() },
        ),
        ("popular_page_50", SearchQuery { page: Some(50), ..SearchQuery::default() }),
        // A word's beginning: `led` finds `ledger`.
        ("prefix_term", SearchQuery { q: Some("led".into()), ..SearchQuery::default() }),
        ("top_rated", SearchQuery { sort: Some(Sort::TopRated), ..SearchQuery::default() }),
    ]
}

fn search(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("catalog_search_10000");
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    for backend in ["sqlite", "postgres"] {
        let postgres = match backend {
            "postgres" => match postgres_url() {
                Ok(url) => Some(url),
                Err(why) => {
                    eprintln!("skipping PostgreSQL: it could not start ({why})");
                    continue;
                }
            },
            _ => None,
        };
        let dir = tempfile::tempdir().unwrap();
        eprintln!("seeding {LISTINGS} listings on {backend}");
        let market = rt.block_on(seeded(postgres, dir.path()));
        for (case, query) in cases() {
            let page = rt.block_on(catalog::search(&market.db, &query)).unwrap();
            eprintln!("  {case}: {} matches, {} on the page", page.total, page.items.len());
            group.bench_function(BenchmarkId::new(backend, case), |b| {
                b.to_async(&rt).iter(|| async { black_box(catalog::search(&market.db, &query).await.unwrap()) })
            });
            // What `GET /v1/catalog` does: the page and the facet counts of the whole search.
            group.bench_function(BenchmarkId::new(format!("{backend}_with_facets"), case), |b| {
                b.to_async(&rt).iter(|| async {
                    let page = catalog::search(&market.db, &query).await.unwrap();
                    black_box((page, catalog::facets(&market.db, &query).await.unwrap()))
                })
            });
        }
    }
    group.finish();
}

/// The console's catalog pages over 10,000 listings (SQLite), and a 365-bar chart.
fn console(c: &mut Criterion) {
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    eprintln!("seeding {LISTINGS} listings on sqlite for the console");
    let market = rt.block_on(seeded(None, dir.path()));
    let state = nexus_marketplace::server::AppState { market, public_url: "http://bench.test".into() };
    let router = nexus_marketplace::server::app(state);
    let mut group = c.benchmark_group("console_10000");
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    for (case, uri) in
        [("catalog_first_page", "/console/catalog"), ("catalog_search_all", "/console/catalog?q=tool&sort=relevance")]
    {
        let page = |uri: &'static str| {
            let router = router.clone();
            async move {
                let request = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
                let response = router.oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
                axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap()
            }
        };
        let bytes = rt.block_on(page(uri));
        eprintln!("  {case}: {} bytes of HTML", bytes.len());
        group.bench_function(case, |b| b.to_async(&rt).iter(|| async { black_box(page(uri).await) }));
    }
    let points: Vec<(String, i64)> = (0..365).map(|day| (format!("2026-{day:03}"), (day * 7919) % 100_000)).collect();
    group.bench_function("chart_365_days", |b| {
        b.iter(|| {
            let chart = nexus_marketplace::console::chart::bars("GMV by day", &points, |v| v.to_string());
            black_box(nexus_marketplace::console::chart::svg(&chart).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, search, console);
criterion_main!(benches);
