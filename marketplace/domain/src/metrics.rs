//! Prometheus metrics on `prometheus-client`, exposed in the OpenMetrics text format: HTTP
//! requests by method, route and status with their durations; plugin invocations by plugin and
//! outcome with their durations; events accepted and deliveries made or skipped; payment
//! collections by outcome; payouts paid and failed. Figures computed at scrape time (host
//! counters, live nodes, the ledger's money) come from the caller as [`ScrapeGauges`].
//!
//! The route label is the router's template (`/v1/installs/{id}`), never the raw path: every
//! distinct label value is a series Prometheus keeps forever, so raw paths would let any client
//! create unbounded series by varying an id. For the same reason plugins are labelled by id,
//! methods outside the standard set become `OTHER`, and unrouted requests share `unmatched`.
//!
//! Counters are registered without `_total`: the encoder appends it to their samples, so
//! `nexus_events` is scraped as `nexus_events_total`. The registry appends a full stop to
//! every help text, so help texts here have none.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What `/metrics` answers with: the encoder writes OpenMetrics (counter families named without
/// `_total`, a closing `# EOF`), which Prometheus parses only when told so.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram upper bounds in seconds: from 100µs (a cached lookup or a trivial plugin call) to
/// 10s (an invocation near its time limit); `+Inf` is implied by the count.
const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The route label of requests no route matched (404s, probes of random paths).
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CurrencyLabels {
    currency: String,
}

type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's registry and handles on its families, shared as `Arc<Metrics>`. Recording
/// touches only atomics and the families' own locks, never the registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_durations: Durations<RouteLabels>,
    invocations: Family<InvocationLabels, Counter>,
    invocation_durations: Durations<PluginLabels>,
    events: Counter,
    deliveries: Counter,
    skipped: Family<ReasonLabels, Counter>,
    collections: Family<OutcomeLabels, Counter>,
    payouts_paid: Counter,
    payouts_failed: Counter,
    /// This node's id once it joined (`nodes.rs`): counters are per node by design, and
    /// `nexus_node_info` says which node these are.
    node: OnceLock<String>,
    node_info: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family, in the order `/metrics` lists them.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let node_info = Family::default();
        registry.register(
            "nexus_node_info",
            "The node these counters are from (Prometheus sums nodes)",
            node_info.clone(),
        );
        let requests = Family::default();
        registry.register("nexus_http_requests", "HTTP requests handled", requests.clone());
        let request_durations = Family::new_with_constructor(durations as fn() -> Histogram);
        registry.register(
            "nexus_http_request_duration_seconds",
            "Time to handle an HTTP request",
            request_durations.clone(),
        );
        let invocations = Family::default();
        registry.register("nexus_invocations", "Plugin invocations by outcome", invocations.clone());
        let invocation_durations = Family::new_with_constructor(durations as fn() -> Histogram);
        registry.register(
            "nexus_invocation_duration_seconds",
            "Time to run a plugin invocation",
            invocation_durations.clone(),
        );
        let events = Counter::default();
        registry.register("nexus_events", "Events accepted by POST /v1/events", events.clone());
        let deliveries = Counter::default();
        registry.register("nexus_event_deliveries", "Event deliveries to installs", deliveries.clone());
        let skipped = Family::default();
        registry.register("nexus_deliveries_skipped", "Event deliveries skipped, by reason", skipped.clone());
        let collections = Family::default();
        registry.register("nexus_payment_collections", "Payment collection attempts by outcome", collections.clone());
        let payouts_paid = Counter::default();
        registry.register("nexus_payouts_paid", "Payouts confirmed paid by this node's runs", payouts_paid.clone());
        let payouts_failed = Counter::default();
        registry.register("nexus_payouts_failed", "Payouts refused, by this node's runs", payouts_failed.clone());
        Self {
            registry,
            requests,
            request_durations,
            invocations,
            invocation_durations,
            events,
            deliveries,
            skipped,
            collections,
            payouts_paid,
            payouts_failed,
            node: OnceLock::new(),
            node_info,
        }
    }

    /// One HTTP request; `route` is the matched template or [`UNMATCHED`].
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = bounded_method(method);
        let route = route.to_owned();
        self.request_durations
            .get_or_create(&RouteLabels { method, route: route.clone() })
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    }

    /// One plugin invocation: its id (`nexus-labs/echo`) and outcome code (`ok`, `trapped`, ...).
    pub fn record_invocation(&self, plugin: &str, outcome: &str, elapsed: Duration) {
        let plugin = plugin.to_owned();
        self.invocation_durations
            .get_or_create(&PluginLabels { plugin: plugin.clone() })
            .observe(elapsed.as_secs_f64());
        self.invocations.get_or_create(&InvocationLabels { plugin, outcome: outcome.to_owned() }).inc();
    }

    /// One event accepted by `POST /v1/events`, fanned out to `deliveries` installs.
    pub fn record_event(&self, deliveries: usize) {
        self.events.inc();
        self.deliveries.inc_by(deliveries as u64);
    }

    /// One delivery not made, and why (`paused`, `awaiting_consent`).
    pub fn record_skipped(&self, reason: &str) {
        self.skipped.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Payouts a run saw confirmed paid and refused.
    pub fn record_payouts(&self, paid: u64, failed: u64) {
        self.payouts_paid.inc_by(paid);
        self.payouts_failed.inc_by(failed);
    }

    /// One payment collection attempt concluded: `succeeded`, `declined` or `unknown`.
    pub fn record_collection(&self, outcome: &str) {
        self.collections.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// Names the node these counters belong to; the first name given stays.
    pub fn set_node(&self, id: &str) {
        if self.node.set(id.to_owned()).is_ok() {
            let labels = NodeLabels { node: id.to_owned(), version: env!("CARGO_PKG_VERSION") };
            self.node_info.get_or_create(&labels).set(1);
        }
    }

    /// The process's families, then `scrape`'s, then the closing `# EOF`: what
    /// `prometheus_client::encoding::text::encode` writes, for two registries.
    pub fn render(&self, scrape: &ScrapeGauges) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and our label sets encode without error.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scrape.registry))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// Gauges computed at scrape time, in a registry of their own that lives for one scrape: the
/// plugin host's counters, the live nodes, the ledger's money. A figure that could not be read
/// is left out rather than reported stale.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    registry: Registry,
}

impl ScrapeGauges {
    /// An unlabelled gauge. `help` is a constant on one line without a closing full stop: the
    /// OpenMetrics encoder writes it as given, unescaped, and adds the full stop.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.registry.register(name, help, ConstGauge::new(value));
    }

    /// A gauge family labelled `currency`, one series per (currency, value).
    pub fn by_currency(
        &mut self,
        name: &'static str,
        help: &'static str,
        values: impl IntoIterator<Item = (String, i64)>,
    ) {
        let family = Family::<CurrencyLabels, Gauge>::default();
        for (currency, value) in values {
            family.get_or_create(&CurrencyLabels { currency }).set(value);
        }
        self.registry.register(name, help, family);
    }
}

/// HTTP allows any token as a method; only the standard ones get their own series.
fn bounded_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// An exposition read back: each family's TYPE and HELP by name, and each sample's value by
    /// its series as written (`name{labels}`).
    #[derive(Debug, Default)]
    struct Exposition {
        families: BTreeMap<String, (Option<String>, Option<String>)>,
        samples: BTreeMap<String, f64>,
    }

    impl Exposition {
        fn value(&self, series: &str) -> f64 {
            *self.samples.get(series).unwrap_or_else(|| panic!("no {series} in {:#?}", self.samples))
        }

        fn kind(&self, family: &str) -> &str {
            self.families[family].0.as_deref().unwrap_or_default()
        }

        /// The (upper bound, cumulative count) pairs of the histogram `name` for the series with
        /// `labels` (as written, without `le`, which the encoder may put anywhere).
        fn buckets(&self, name: &str, labels: &str) -> Vec<(f64, f64)> {
            let bucket = |series: &str| {
                let inside = series.strip_prefix(name)?.strip_prefix("_bucket{")?.strip_suffix('}')?;
                let (before, rest) = inside.split_once("le=\"")?;
                let (bound, after) = rest.split_once('"')?;
                let others = format!("{}{}", before.trim_end_matches(','), after.trim_start_matches(','));
                (others == labels).then(|| number(bound))
            };
            let mut buckets: Vec<_> =
                self.samples.iter().filter_map(|(series, value)| Some((bucket(series)?, *value))).collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            buckets
        }
    }

    fn number(text: &str) -> f64 {
        match text {
            "+Inf" => f64::INFINITY,
            _ => text.parse().unwrap_or_else(|_| panic!("not a number: {text}")),
        }
    }

    /// Parses the OpenMetrics text, asserting its shape: a closing `# EOF`, every family with
    /// HELP and TYPE, every sample under a declared family with the suffix its type allows.
    fn parse(text: &str) -> Exposition {
        let body = text.strip_suffix("# EOF\n").unwrap_or_else(|| panic!("no closing # EOF:\n{text}"));
        let mut exposition = Exposition::default();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                exposition.families.entry(name.to_owned()).or_default().1 = Some(help.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let previous = exposition.families.entry(name.to_owned()).or_default().0.replace(kind.to_owned());
                assert_eq!(previous, None, "{name} typed twice");
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(family_of(&exposition, name).is_some(), "{name} belongs to no family:\n{text}");
                exposition.samples.insert(series.to_owned(), number(value));
            }
        }
        for (name, (kind, help)) in &exposition.families {
            assert!(kind.is_some() && help.is_some(), "{name} lacks TYPE or HELP:\n{text}");
        }
        exposition
    }

    fn family_of<'a>(exposition: &'a Exposition, sample: &str) -> Option<&'a str> {
        exposition.families.iter().find_map(|(name, (kind, _))| {
            let suffix = sample.strip_prefix(name.as_str())?;
            let allowed = match kind.as_deref()? {
                "counter" => suffix == "_total",
                "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
                _ => suffix.is_empty(),
            };
            allowed.then_some(name.as_str())
        })
    }

    fn render(metrics: &Metrics) -> Exposition {
        parse(&metrics.render(&ScrapeGauges::default()))
    }

    #[test]
    fn a_request_renders_its_counter_and_histogram_once() {
        let metrics = Metrics::new();
        metrics.record_request("GET", "/v1/installs/{id}", 200, Duration::from_millis(5));
        let text = metrics.render(&ScrapeGauges::default());
        let exposition = parse(&text);
        assert_eq!(
            exposition.value(r#"nexus_http_requests_total{method="GET",route="/v1/installs/{id}",status="200"}"#),
            1.0
        );
        // 5ms lands in the 0.005 bucket itself: bounds are inclusive.
        let buckets =
            exposition.buckets("nexus_http_request_duration_seconds", r#"method="GET",route="/v1/installs/{id}""#);
        assert_eq!(buckets[4], (0.0025, 0.0));
        assert_eq!(buckets[5], (0.005, 1.0));
        assert_eq!(
            exposition.value(r#"nexus_http_request_duration_seconds_sum{method="GET",route="/v1/installs/{id}"}"#),
            0.005
        );
        assert_eq!(
            exposition.value(r#"nexus_http_request_duration_seconds_count{method="GET",route="/v1/installs/{id}"}"#),
            1.0
        );
        assert_eq!(text.matches("# TYPE nexus_http_request_duration_seconds histogram\n").count(), 1);
    }

    #[test]
    fn invocations_render_exactly_with_overflow_only_in_inf() {
        let metrics = Metrics::new();
        metrics.record_invocation("nexus-labs/echo", "ok", Duration::from_millis(1));
        metrics.record_invocation("nexus-labs/echo", "limit_exceeded", Duration::from_secs(30));
        let exposition = render(&metrics);
        assert_eq!(exposition.kind("nexus_invocations"), "counter");
        assert_eq!(exposition.kind("nexus_invocation_duration_seconds"), "histogram");
        assert_eq!(
            exposition.value(r#"nexus_invocations_total{plugin="nexus-labs/echo",outcome="limit_exceeded"}"#),
            1.0
        );
        assert_eq!(exposition.value(r#"nexus_invocations_total{plugin="nexus-labs/echo",outcome="ok"}"#), 1.0);
        let counts = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2].map(f64::from);
        let expected: Vec<(f64, f64)> = BUCKETS.iter().copied().chain([f64::INFINITY]).zip(counts).collect();
        let buckets = exposition.buckets("nexus_invocation_duration_seconds", r#"plugin="nexus-labs/echo""#);
        assert_eq!(buckets, expected);
        assert_eq!(exposition.value(r#"nexus_invocation_duration_seconds_sum{plugin="nexus-labs/echo"}"#), 30.001);
        assert_eq!(exposition.value(r#"nexus_invocation_duration_seconds_count{plugin="nexus-labs/echo"}"#), 2.0);
    }

    #[test]
    fn an_empty_render_has_only_the_unlabelled_counters_and_the_scrape_gauges() {
        let mut scrape = ScrapeGauges::default();
        scrape.gauge("nexus_host_loaded_components", "Components compiled and cached", 3);
        let exposition = parse(&Metrics::new().render(&scrape));
        let samples: Vec<(&str, f64)> =
            exposition.samples.iter().map(|(series, value)| (series.as_str(), *value)).collect();
        assert_eq!(
            samples,
            [
                ("nexus_event_deliveries_total", 0.0),
                ("nexus_events_total", 0.0),
                ("nexus_host_loaded_components", 3.0),
                ("nexus_payouts_failed_total", 0.0),
                ("nexus_payouts_paid_total", 0.0),
            ]
        );
        assert_eq!(
            exposition.families["nexus_host_loaded_components"].1.as_deref(),
            Some("Components compiled and cached.")
        );
    }

    #[test]
    fn events_deliveries_and_skips_are_counted() {
        let metrics = Metrics::new();
        metrics.record_event(3);
        metrics.record_event(0);
        for reason in ["paused", "awaiting_consent", "paused"] {
            metrics.record_skipped(reason);
        }
        let exposition = render(&metrics);
        assert_eq!(exposition.value("nexus_events_total"), 2.0);
        assert_eq!(exposition.value("nexus_event_deliveries_total"), 3.0);
        assert_eq!(exposition.kind("nexus_deliveries_skipped"), "counter");
        assert_eq!(exposition.value(r#"nexus_deliveries_skipped_total{reason="awaiting_consent"}"#), 1.0);
        assert_eq!(exposition.value(r#"nexus_deliveries_skipped_total{reason="paused"}"#), 2.0);
    }

    #[test]
    fn collections_and_payouts_are_counted() {
        let metrics = Metrics::new();
        metrics.record_collection("succeeded");
        metrics.record_collection("declined");
        metrics.record_collection("succeeded");
        metrics.record_payouts(3, 1);
        let exposition = render(&metrics);
        assert_eq!(exposition.value(r#"nexus_payment_collections_total{outcome="declined"}"#), 1.0);
        assert_eq!(exposition.value(r#"nexus_payment_collections_total{outcome="succeeded"}"#), 2.0);
        assert_eq!(exposition.value("nexus_payouts_paid_total"), 3.0);
        assert_eq!(exposition.value("nexus_payouts_failed_total"), 1.0);
    }

    #[test]
    fn a_currency_gauge_renders_one_sample_per_value() {
        let mut scrape = ScrapeGauges::default();
        scrape.by_currency("nexus_gmv_minor", "GMV", [("EUR".to_owned(), 1300), ("US\"D".to_owned(), 7)]);
        let text = Metrics::new().render(&scrape);
        let exposition = parse(&text);
        assert_eq!(exposition.kind("nexus_gmv_minor"), "gauge");
        assert_eq!(exposition.value(r#"nexus_gmv_minor{currency="EUR"}"#), 1300.0);
        assert_eq!(exposition.value(r#"nexus_gmv_minor{currency="US\"D"}"#), 7.0);
        assert!(text.lines().any(|line| line == r#"nexus_gmv_minor{currency="EUR"} 1300"#), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_odd_methods_bounded() {
        let metrics = Metrics::new();
        metrics.record_invocation("evil\"plugin\\\nid", "ok", Duration::ZERO);
        metrics.record_request("BREW", UNMATCHED, 405, Duration::ZERO);
        let mut scrape = ScrapeGauges::default();
        scrape.gauge("nexus_odd", "The largest value", u64::MAX);
        let exposition = parse(&metrics.render(&scrape));
        assert_eq!(exposition.value(r#"nexus_invocations_total{plugin="evil\"plugin\\\nid",outcome="ok"}"#), 1.0);
        assert_eq!(
            exposition.value(r#"nexus_http_requests_total{method="OTHER",route="unmatched",status="405"}"#),
            1.0
        );
        assert_eq!(exposition.value("nexus_odd"), u64::MAX as f64);
    }

    /// The families `/metrics` exposes from the process registry, as (family, type, sample
    /// names): the names the README and dashboards use.
    const DOCUMENTED: [(&str, &str, &[&str]); 11] = [
        ("nexus_node_info", "gauge", &["nexus_node_info"]),
        ("nexus_http_requests", "counter", &["nexus_http_requests_total"]),
        (
            "nexus_http_request_duration_seconds",
            "histogram",
            &[
                "nexus_http_request_duration_seconds_bucket",
                "nexus_http_request_duration_seconds_sum",
                "nexus_http_request_duration_seconds_count",
            ],
        ),
        ("nexus_invocations", "counter", &["nexus_invocations_total"]),
        (
            "nexus_invocation_duration_seconds",
            "histogram",
            &[
                "nexus_invocation_duration_seconds_bucket",
                "nexus_invocation_duration_seconds_sum",
                "nexus_invocation_duration_seconds_count",
            ],
        ),
        ("nexus_events", "counter", &["nexus_events_total"]),
        ("nexus_event_deliveries", "counter", &["nexus_event_deliveries_total"]),
        ("nexus_deliveries_skipped", "counter", &["nexus_deliveries_skipped_total"]),
        ("nexus_payment_collections", "counter", &["nexus_payment_collections_total"]),
        ("nexus_payouts_paid", "counter", &["nexus_payouts_paid_total"]),
        ("nexus_payouts_failed", "counter", &["nexus_payouts_failed_total"]),
    ];

    #[test]
    fn one_event_of_each_kind_renders_every_documented_family_with_help_and_type() {
        let metrics = Metrics::new();
        metrics.set_node("node-a");
        metrics.set_node("node-b");
        metrics.record_request("POST", "/v1/events", 200, Duration::from_millis(2));
        metrics.record_invocation("nexus-labs/echo", "ok", Duration::from_millis(1));
        metrics.record_event(1);
        metrics.record_skipped("paused");
        metrics.record_collection("succeeded");
        metrics.record_payouts(1, 1);
        let mut scrape = ScrapeGauges::default();
        scrape.gauge("nexus_live_nodes", "Live nodes", 2);
        scrape.by_currency("nexus_gmv_minor", "Gross collected from tenants, in minor units", [("EUR".to_owned(), 5)]);
        let exposition = parse(&metrics.render(&scrape));

        let mut expected: BTreeMap<&str, &str> = DOCUMENTED.iter().map(|(name, kind, _)| (*name, *kind)).collect();
        expected.extend([("nexus_live_nodes", "gauge"), ("nexus_gmv_minor", "gauge")]);
        let families: BTreeMap<&str, &str> =
            exposition.families.keys().map(|name| (name.as_str(), exposition.kind(name))).collect();
        assert_eq!(families, expected);
        let sample_names: BTreeSet<&str> =
            exposition.samples.keys().map(|series| series.split('{').next().unwrap_or(series)).collect();
        let mut documented: BTreeSet<&str> =
            DOCUMENTED.iter().flat_map(|(_, _, samples)| samples.iter().copied()).collect();
        documented.extend(["nexus_live_nodes", "nexus_gmv_minor"]);
        assert_eq!(sample_names, documented);
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(exposition.value(&format!(r#"nexus_node_info{{node="node-a",version="{version}"}}"#)), 1.0);
        assert_eq!(exposition.value(r#"nexus_gmv_minor{currency="EUR"}"#), 5.0);
        assert_eq!(exposition.value("nexus_live_nodes"), 2.0);
    }
}
