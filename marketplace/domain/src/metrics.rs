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

    /// One delivery of an asynchronous event made by a worker (the event was counted when
    /// it was accepted).
    pub fn record_delivered(&self) {
        self.deliveries.inc();
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

    /// A gauge family labelled `currency` (a `Currency`, or any code as text), one series
    /// per (currency, value).
    pub fn by_currency<C: AsRef<str>>(
        &mut self,
        name: &'static str,
        help: &'static str,
        values: impl IntoIterator<Item = (C, i64)>,
    ) {
        let family = Family::<CurrencyLabels, Gauge>::default();
        for (currency, value) in values {
            family.get_or_create(&CurrencyLabels { currency: currency.as_ref().to_string() }).set(value);
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
mod tests;
