//! The exposition read back and checked: names, types, help and values.

// A test reads top to bottom: the 60-line rule is for the code under test.
#![allow(clippy::too_many_lines)]

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
    assert_eq!(exposition.value(r#"nexus_invocations_total{plugin="nexus-labs/echo",outcome="limit_exceeded"}"#), 1.0);
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
    assert_eq!(exposition.value(r#"nexus_http_requests_total{method="OTHER",route="unmatched",status="405"}"#), 1.0);
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
