//! Prometheus metrics, written by hand in the text exposition format 0.0.4 so the service needs
//! no metrics crate: HTTP requests by method, route and status with their durations; plugin
//! invocations by plugin and outcome with their durations; events accepted and deliveries made
//! or skipped; payment collections by outcome. Callers add point-in-time gauges (loaded components, pool sizes) at render time.
//!
//! The route label is the router's template (`/v1/installs/{id}`), never the raw path: every
//! distinct label value is a series Prometheus keeps forever, so raw paths would let any client
//! create unbounded series by varying an id. For the same reason plugins are labelled by id,
//! methods outside the standard set become `OTHER`, and unrouted requests share `unmatched`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Histogram upper bounds in seconds: from 100µs (a cached lookup or a trivial plugin call) to
/// 10s (an invocation near its time limit); `+Inf` is implied by the count.
const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The route label of requests no route matched (404s, probes of random paths).
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket, not cumulative; rendering accumulates.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// A labelled family: its name, its help text and the names of its labels.
struct Family(&'static str, &'static str, &'static [&'static str]);

const REQUESTS: Family = Family("nexus_http_requests_total", "HTTP requests handled.", &["method", "route", "status"]);
const REQUEST_DURATIONS: Family =
    Family("nexus_http_request_duration_seconds", "Time to handle an HTTP request.", &["method", "route"]);
const INVOCATIONS: Family = Family("nexus_invocations_total", "Plugin invocations by outcome.", &["plugin", "outcome"]);
const INVOCATION_DURATIONS: Family =
    Family("nexus_invocation_duration_seconds", "Time to run a plugin invocation.", &["plugin"]);
const SKIPPED: Family = Family("nexus_deliveries_skipped_total", "Event deliveries skipped, by reason.", &["reason"]);
const COLLECTIONS: Family =
    Family("nexus_payment_collections_total", "Payment collection attempts by outcome.", &["outcome"]);

/// Label values in the order of their family's `labels`.
type Key = Vec<String>;

/// The labelled series. BTreeMaps so rendering is sorted and byte-for-byte repeatable.
#[derive(Debug, Clone, Default)]
struct Series {
    requests: BTreeMap<Key, u64>,
    request_durations: BTreeMap<Key, Histogram>,
    invocations: BTreeMap<Key, u64>,
    invocation_durations: BTreeMap<Key, Histogram>,
    skipped: BTreeMap<Key, u64>,
    collections: BTreeMap<Key, u64>,
}

/// Process-wide counters and histograms, shared as `Arc<Metrics>`. Label keys are built before
/// the lock is taken, so it is held only for the map updates.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
    events: AtomicU64,
    deliveries: AtomicU64,
    payouts_paid: AtomicU64,
    payouts_failed: AtomicU64,
    /// This node's id once it joined (`nodes.rs`): counters are per node by design, and
    /// `nexus_node_info` says which node these are.
    node: std::sync::OnceLock<String>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// One HTTP request; `route` is the matched template or [`UNMATCHED`].
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = bounded_method(method);
        let count_key = vec![method.to_owned(), route.to_owned(), status.to_string()];
        let duration_key = vec![method.to_owned(), route.to_owned()];
        let mut series = self.lock();
        *series.requests.entry(count_key).or_default() += 1;
        series.request_durations.entry(duration_key).or_default().observe(elapsed);
    }

    /// One plugin invocation: its id (`nexus-labs/echo`) and outcome code (`ok`, `trapped`, ...).
    pub fn record_invocation(&self, plugin: &str, outcome: &str, elapsed: Duration) {
        let count_key = vec![plugin.to_owned(), outcome.to_owned()];
        let duration_key = vec![plugin.to_owned()];
        let mut series = self.lock();
        *series.invocations.entry(count_key).or_default() += 1;
        series.invocation_durations.entry(duration_key).or_default().observe(elapsed);
    }

    /// One event accepted by `POST /v1/events`, fanned out to `deliveries` installs.
    pub fn record_event(&self, deliveries: usize) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(deliveries as u64, Ordering::Relaxed);
    }

    /// One delivery not made, and why (`paused`, `awaiting_consent`).
    pub fn record_skipped(&self, reason: &str) {
        let key = vec![reason.to_owned()];
        *self.lock().skipped.entry(key).or_default() += 1;
    }

    /// Payouts a run saw confirmed paid and refused.
    pub fn record_payouts(&self, paid: u64, failed: u64) {
        self.payouts_paid.fetch_add(paid, Ordering::Relaxed);
        self.payouts_failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// One payment collection attempt concluded: `succeeded`, `declined` or `unknown`.
    pub fn record_collection(&self, outcome: &str) {
        let key = vec![outcome.to_owned()];
        *self.lock().collections.entry(key).or_default() += 1;
    }

    /// Everything in the text format. Labelled families appear once they have a series; the two
    /// unlabelled counters always do (0 is a real value, and `rate()` needs the series from the
    /// start). `extra` gauges, as (name, help, value), come last in the order given.
    /// Names the node these counters belong to.
    pub fn set_node(&self, id: &str) {
        let _ = self.node.set(id.to_string());
    }

    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        // Format from a copy so recording threads never wait on string building.
        let series = self.lock().clone();
        let mut out = String::new();
        if let Some(node) = self.node.get() {
            out += "# HELP nexus_node_info The node these counters are from (Prometheus sums nodes).\n";
            out += "# TYPE nexus_node_info gauge\n";
            out +=
                &format!("nexus_node_info{{node=\"{}\",version=\"{}\"}} 1\n", escape(node), env!("CARGO_PKG_VERSION"));
        }
        counters(&mut out, &REQUESTS, &series.requests);
        histograms(&mut out, &REQUEST_DURATIONS, &series.request_durations);
        counters(&mut out, &INVOCATIONS, &series.invocations);
        histograms(&mut out, &INVOCATION_DURATIONS, &series.invocation_durations);
        let events = self.events.load(Ordering::Relaxed) as f64;
        single(&mut out, "nexus_events_total", "Events accepted by POST /v1/events.", "counter", events);
        let deliveries = self.deliveries.load(Ordering::Relaxed) as f64;
        single(&mut out, "nexus_event_deliveries_total", "Event deliveries to installs.", "counter", deliveries);
        counters(&mut out, &SKIPPED, &series.skipped);
        counters(&mut out, &COLLECTIONS, &series.collections);
        let paid = self.payouts_paid.load(Ordering::Relaxed) as f64;
        single(&mut out, "nexus_payouts_paid_total", "Payouts confirmed paid by this node's runs.", "counter", paid);
        let failed = self.payouts_failed.load(Ordering::Relaxed) as f64;
        single(&mut out, "nexus_payouts_failed_total", "Payouts refused, by this node's runs.", "counter", failed);
        for (name, help, value) in extra {
            single(&mut out, name, help, "gauge", *value);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        // A panic while the lock was held could only interrupt a counter increment; the maps
        // are still consistent, so keep counting rather than lose metrics for the process life.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// HTTP allows any token as a method; only the standard ones get their own series.
pub(crate) fn bounded_method(method: &str) -> &str {
    let standard =
        matches!(method, "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE");
    if standard { method } else { "OTHER" }
}

/// A counter family's HELP, TYPE and series, or nothing when it has no series yet.
fn counters(out: &mut String, family: &Family, series: &BTreeMap<Key, u64>) {
    if !series.is_empty() {
        header(out, family.0, family.1, "counter");
    }
    for (key, count) in series {
        sample(out, family.0, &labels(family, key), *count as f64);
    }
}

fn histograms(out: &mut String, family: &Family, series: &BTreeMap<Key, Histogram>) {
    if !series.is_empty() {
        header(out, family.0, family.1, "histogram");
    }
    for (key, histogram) in series {
        histogram_samples(out, family.0, &labels(family, key), histogram);
    }
}

fn labels<'a>(family: &Family, key: &'a Key) -> Vec<(&'static str, &'a str)> {
    family.2.iter().copied().zip(key.iter().map(String::as_str)).collect()
}

/// A gauge family with one label, from values computed at scrape time (the marketplace's
/// money from the ledger, which every node reads alike).
pub fn labelled_gauge(name: &str, help: &str, label: &str, samples: &[(String, f64)]) -> String {
    let mut out = String::new();
    header(&mut out, name, help, "gauge");
    for (value, sample_value) in samples {
        sample(&mut out, name, &[(label, value)], *sample_value);
    }
    out
}

/// An unlabelled family of one sample.
fn single(out: &mut String, name: &str, help: &str, kind: &str, value: f64) {
    header(out, name, help, kind);
    sample(out, name, &[], value);
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', r"\\").replace('\n', r"\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram_samples(out: &mut String, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    let bounds = BUCKETS.iter().map(|bound| bound.to_string()).chain(["+Inf".to_owned()]);
    let counts = histogram.buckets.iter().copied().chain([histogram.count - histogram.buckets.iter().sum::<u64>()]);
    for (bound, count) in bounds.zip(counts) {
        cumulative += count;
        let mut with_le = labels.to_vec();
        with_le.push(("le", &bound));
        sample(out, &bucket, &with_le, cumulative as f64);
    }
    sample(out, &format!("{name}_sum"), labels, histogram.sum);
    sample(out, &format!("{name}_count"), labels, histogram.count as f64);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        let pairs: Vec<String> = labels.iter().map(|(key, value)| format!("{key}=\"{}\"", escape(value))).collect();
        let _ = write!(out, "{{{}}}", pairs.join(","));
    }
    let _ = writeln!(out, " {}", number(value));
}

/// Label values escape backslash, double quote and newline, as the format requires.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
}

/// Rust prints infinities as `inf`; the format wants `+Inf` and `-Inf`.
fn number(value: f64) -> String {
    match value {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts `text` has `line` as one whole line.
    fn assert_line(text: &str, line: &str) {
        assert!(text.lines().any(|candidate| candidate == line), "no line {line:?} in:\n{text}");
    }

    #[test]
    fn a_request_renders_its_counter_and_histogram_once() {
        let metrics = Metrics::new();
        metrics.record_request("GET", "/v1/installs/{id}", 200, Duration::from_millis(5));
        let text = metrics.render(&[]);
        assert_line(&text, r#"nexus_http_requests_total{method="GET",route="/v1/installs/{id}",status="200"} 1"#);
        // 5ms lands in the 0.005 bucket itself: bounds are inclusive.
        let bucket = r#"nexus_http_request_duration_seconds_bucket{method="GET",route="/v1/installs/{id}""#;
        assert_line(&text, &format!(r#"{bucket},le="0.0025"}} 0"#));
        assert_line(&text, &format!(r#"{bucket},le="0.005"}} 1"#));
        assert_line(&text, r#"nexus_http_request_duration_seconds_sum{method="GET",route="/v1/installs/{id}"} 0.005"#);
        assert_line(&text, r#"nexus_http_request_duration_seconds_count{method="GET",route="/v1/installs/{id}"} 1"#);
        assert_eq!(text.matches("# TYPE nexus_http_request_duration_seconds histogram\n").count(), 1);
    }

    #[test]
    fn invocations_render_exactly_with_overflow_only_in_inf() {
        let metrics = Metrics::new();
        metrics.record_invocation("nexus-labs/echo", "ok", Duration::from_millis(1));
        metrics.record_invocation("nexus-labs/echo", "limit_exceeded", Duration::from_secs(30));
        let text = metrics.render(&[]);
        let mut expected = String::from(concat!(
            "# HELP nexus_invocations_total Plugin invocations by outcome.\n",
            "# TYPE nexus_invocations_total counter\n",
            "nexus_invocations_total{plugin=\"nexus-labs/echo\",outcome=\"limit_exceeded\"} 1\n",
            "nexus_invocations_total{plugin=\"nexus-labs/echo\",outcome=\"ok\"} 1\n",
            "# HELP nexus_invocation_duration_seconds Time to run a plugin invocation.\n",
            "# TYPE nexus_invocation_duration_seconds histogram\n",
        ));
        let counts = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2];
        for (bound, count) in BUCKETS.iter().map(f64::to_string).chain(["+Inf".into()]).zip(counts) {
            expected += &format!(
                "nexus_invocation_duration_seconds_bucket{{plugin=\"nexus-labs/echo\",le=\"{bound}\"}} {count}\n"
            );
        }
        expected += "nexus_invocation_duration_seconds_sum{plugin=\"nexus-labs/echo\"} 30.001\n";
        expected += "nexus_invocation_duration_seconds_count{plugin=\"nexus-labs/echo\"} 2\n";
        assert!(text.starts_with(&expected), "{text}");
    }

    #[test]
    fn an_empty_render_has_only_the_unlabelled_counters_and_the_extras() {
        let extra = [("nexus_host_loaded_components", "Components compiled and cached.", 3.0)];
        assert_eq!(
            Metrics::new().render(&extra),
            concat!(
                "# HELP nexus_events_total Events accepted by POST /v1/events.\n",
                "# TYPE nexus_events_total counter\n",
                "nexus_events_total 0\n",
                "# HELP nexus_event_deliveries_total Event deliveries to installs.\n",
                "# TYPE nexus_event_deliveries_total counter\n",
                "nexus_event_deliveries_total 0\n",
                "# HELP nexus_payouts_paid_total Payouts confirmed paid by this node's runs.\n",
                "# TYPE nexus_payouts_paid_total counter\n",
                "nexus_payouts_paid_total 0\n",
                "# HELP nexus_payouts_failed_total Payouts refused, by this node's runs.\n",
                "# TYPE nexus_payouts_failed_total counter\n",
                "nexus_payouts_failed_total 0\n",
                "# HELP nexus_host_loaded_components Components compiled and cached.\n",
                "# TYPE nexus_host_loaded_components gauge\n",
                "nexus_host_loaded_components 3\n",
            )
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
        let text = metrics.render(&[]);
        assert_line(&text, "nexus_events_total 2");
        assert_line(&text, "nexus_event_deliveries_total 3");
        let skipped = concat!(
            "# TYPE nexus_deliveries_skipped_total counter\n",
            "nexus_deliveries_skipped_total{reason=\"awaiting_consent\"} 1\n",
            "nexus_deliveries_skipped_total{reason=\"paused\"} 2\n",
        );
        assert!(text.contains(skipped), "{text}");
    }

    #[test]
    fn collections_and_payouts_are_counted() {
        let metrics = Metrics::new();
        metrics.record_collection("succeeded");
        metrics.record_collection("declined");
        metrics.record_collection("succeeded");
        metrics.record_payouts(3, 1);
        let text = metrics.render(&[]);
        assert_line(&text, r#"nexus_payment_collections_total{outcome="declined"} 1"#);
        assert_line(&text, r#"nexus_payment_collections_total{outcome="succeeded"} 2"#);
        assert_line(&text, "nexus_payouts_paid_total 3");
        assert_line(&text, "nexus_payouts_failed_total 1");
    }

    #[test]
    fn a_labelled_gauge_renders_one_sample_per_value() {
        let text =
            labelled_gauge("nexus_gmv_minor", "GMV", "currency", &[("EUR".into(), 1300.0), ("US\"D".into(), 7.0)]);
        assert_eq!(
            text,
            "# HELP nexus_gmv_minor GMV\n# TYPE nexus_gmv_minor gauge\nnexus_gmv_minor{currency=\"EUR\"} 1300\nnexus_gmv_minor{currency=\"US\\\"D\"} 7\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped_and_odd_methods_bounded() {
        let metrics = Metrics::new();
        metrics.record_invocation("evil\"plugin\\\nid", "ok", Duration::ZERO);
        metrics.record_request("BREW", UNMATCHED, 405, Duration::ZERO);
        let text = metrics.render(&[("nexus_odd", "back\\slash\nnewline", f64::INFINITY)]);
        assert_line(&text, r#"nexus_invocations_total{plugin="evil\"plugin\\\nid",outcome="ok"} 1"#);
        assert_line(&text, r#"nexus_http_requests_total{method="OTHER",route="unmatched",status="405"} 1"#);
        assert_line(&text, r"# HELP nexus_odd back\\slash\nnewline");
        assert_line(&text, "nexus_odd +Inf");
    }
}
