//! `nexus demo`: every sample and hostile plugin through one host, with a real webhook
//! receiver on loopback, then all of them at once to show that nothing leaks between them.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_host::{
    Capability, Event, Grants, Host, HostConfig, InvocationContext, Limits, LoadError, MemoryKv, OutboundPolicy,
    Plugin, Secrets,
};
use nexus_sample_plugins as samples;
use tokio::task::JoinSet;

use super::output;

/// One demo step: a plugin, an event, and the install settings it runs with.
struct Scenario {
    plugin: &'static str,
    event_type: &'static str,
    payload: String,
    context: InvocationContext,
    /// Whether success is the expected outcome (hostile plugins are expected to fail).
    expect_ok: bool,
}

pub async fn run() -> anyhow::Result<ExitCode> {
    let webhook = Webhook::start().await?;
    // The demo's webhook receiver listens on loopback.
    let host = Arc::new(Host::new(HostConfig { outbound: OutboundPolicy::local_testing(), ..HostConfig::default() })?);
    println!("Nexus host demo: every sample plugin, then the hostile ones, in one host.\n");

    let (plugins, refusals) = load_all(&host).await?;
    println!();

    let mut failures = 0;
    for (name, error) in &refusals {
        let as_expected = REFUSED_AT_LOAD.contains(name);
        failures += usize::from(!as_expected);
        println!("── {name} · load {}", if as_expected { "" } else { "(UNEXPECTED)" });
        println!("refused   {} — {error}\n", error.code());
    }
    for scenario in scenarios(&webhook) {
        let plugin = plugins.iter().find(|(name, _)| *name == scenario.plugin).map(|(_, p)| p.clone());
        let Some(plugin) = plugin else { anyhow::bail!("no sample plugin named {}", scenario.plugin) };
        let event =
            Event { id: "evt-demo-1".into(), event_type: scenario.event_type.into(), payload: scenario.payload };
        let invocation = host.invoke(&plugin, scenario.context, &event).await;
        let as_expected = invocation.result.is_ok() == scenario.expect_ok;
        failures += usize::from(!as_expected);
        println!("── {} · {} {}", scenario.plugin, scenario.event_type, if as_expected { "" } else { "(UNEXPECTED)" });
        output::print_invocation(&invocation, 3);
        println!();
    }
    for request in webhook.received.lock().map(|r| r.clone()).unwrap_or_default() {
        println!("webhook receiver got: {request}");
    }

    let (served, contained, elapsed) = all_at_once(&host, &plugins).await;
    println!(
        "\nall at once: {served}/200 echo invocations served and {contained}/30 hostile invocations contained in {}",
        output::duration(elapsed)
    );
    let metrics = host.metrics();
    println!("host counters: {}", serde_json::to_string(&metrics)?);
    let ok = failures == 0 && served == 200 && contained == 30;
    println!(
        "{}",
        if ok { "demo finished: every outcome as expected" } else { "demo finished with UNEXPECTED outcomes" }
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Loads every sample and hostile plugin, printing each that loads: the loaded ones and the
/// refusals, by name.
async fn load_all(host: &Host) -> anyhow::Result<(Vec<(&'static str, Arc<Plugin>)>, Vec<(&'static str, LoadError)>)> {
    let mut plugins = Vec::new();
    let mut refusals = Vec::new();
    for (name, path) in samples::ALL {
        let started = Instant::now();
        let bytes = samples::bytes(path)?;
        match host.load(&bytes).await {
            Ok((plugin, _)) => {
                println!(
                    "loaded  {name:<16} {} KiB, {} in {}",
                    bytes.len() / 1024,
                    plugin.contract(),
                    output::duration(started.elapsed())
                );
                plugins.push((*name, plugin));
            }
            Err(error) => refusals.push((*name, error)),
        }
    }
    Ok((plugins, refusals))
}

/// Hostile components the host must refuse when loading them (over the per-plugin maxima).
const REFUSED_AT_LOAD: [&str; 3] = ["instance-hog", "memory-hog", "table-hog"];

fn context(capabilities: &[Capability], config: &[(&str, &str)]) -> InvocationContext {
    InvocationContext {
        tenant: "acme".into(),
        install: "demo".into(),
        grants: Grants { capabilities: capabilities.iter().copied().collect(), allowed_hosts: vec![] },
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        secrets: Secrets::default(),
        kv: Arc::new(MemoryKv::new()),
        limits: Limits::default(),
    }
}

fn scenarios(webhook: &Webhook) -> Vec<Scenario> {
    let all = Capability::ALL;
    let mut notifier = context(&all, &[("channel", "#revenue")]);
    notifier.secrets = [("webhook-url".to_string(), webhook.url.clone())].into_iter().collect();
    notifier.grants.allowed_hosts = vec![webhook.host.clone()];
    let tax = context(&all, &[("rates", "DE=1900,FR=2000,US-CA=725")]);
    let mut spin = context(&[], &[]);
    spin.limits.fuel = 50_000_000;
    let mut forbidden = context(&[Capability::Http], &[]);
    forbidden.grants.allowed_hosts = vec![webhook.host.clone()];
    let mut smuggler = context(&[Capability::Http], &[]);
    smuggler.grants.allowed_hosts = vec![webhook.host.clone()];
    let smuggled = serde_json::json!({ "url": webhook.url, "headers": [["Host", "metadata.internal"]] }).to_string();
    let mut calls = context(&[], &[]);
    calls.limits.fuel = 50_000_000;
    vec![
        sample("echo", "ping", r#"{"hello":"world"}"#, context(&all, &[("prefix", "echo: ")])),
        sample(
            "chat-notifier",
            "invoice.paid",
            r#"{"invoice_id":"INV-1042","customer":"Globex","amount_minor":249900,"currency":"USD"}"#,
            notifier,
        ),
        sample(
            "pii-redactor",
            "user.updated",
            r#"{"name":"Ada","email":"ada@example.com","phone":"+44 20 7946 0958","card":"4242 4242 4242 4242"}"#,
            context(&all, &[]),
        ),
        sample(
            "tax-calculator",
            "order.created",
            r#"{"order_id":"o-77","amount_minor":12345,"currency":"EUR","region":"DE"}"#,
            tax,
        ),
        sample("contract-v1-1", "ping", "{}", context(&all, &[])),
        hostile("spin-loop", "any", "{}", spin),
        hostile("memory-bomb", "any", "{}", context(&[], &[])),
        hostile("deep-recursion", "any", "{}", context(&[], &[])),
        hostile("huge-output", "any", "{}", context(&[], &[])),
        hostile("log-flood", "any", "{}", context(&[Capability::Log], &[])),
        hostile("kv-flood", "any", "{}", context(&[Capability::Kv], &[])),
        hostile("forbidden-host", "any", "http://metadata.internal/", forbidden),
        hostile("snooper", "snoop.file", "/etc/passwd", context(&all, &[])),
        hostile("snooper", "snoop.env", "", context(&all, &[])),
        hostile("panicker", "any", "{}", context(&[], &[])),
        sample("sleeper", "any", r#"{"ms":20}"#, context(&[], &[])),
        sample("terminal-forger", "any", "{}", context(&[Capability::Log], &[])),
        hostile("host-call-loop", "any", "{}", calls),
        hostile("kv-delete-flood", "any", "{}", context(&[Capability::Kv], &[])),
        hostile("action-flood", "any", "{}", context(&[], &[])),
        hostile("error-flood", "any", "{}", context(&[], &[])),
        hostile("resource-hog", "any", "{}", context(&[], &[])),
        hostile("header-smuggler", "any", &smuggled, smuggler),
        hostile("split-memory", "any", "{}", context(&[], &[])),
        hostile("random-hog", "any", "{}", context(&[], &[])),
    ]
}

/// A sample plugin's step, expected to succeed.
fn sample(plugin: &'static str, event_type: &'static str, payload: &str, context: InvocationContext) -> Scenario {
    Scenario { plugin, event_type, payload: payload.to_string(), context, expect_ok: true }
}

/// A hostile plugin's step, expected to fail.
fn hostile(plugin: &'static str, event_type: &'static str, payload: &str, context: InvocationContext) -> Scenario {
    Scenario { plugin, event_type, payload: payload.to_string(), context, expect_ok: false }
}

/// 200 echo invocations while 30 hostile ones run on the same host.
async fn all_at_once(host: &Arc<Host>, plugins: &[(&str, Arc<Plugin>)]) -> (usize, usize, Duration) {
    let find = |name: &str| plugins.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone());
    let started = Instant::now();
    let hostile = ["spin-loop", "memory-bomb", "deep-recursion", "log-flood", "panicker", "huge-output"];
    let mut attacks = JoinSet::new();
    for name in hostile.iter().cycle().take(30) {
        let (Some(plugin), host) = (find(name), host.clone()) else { continue };
        let mut context = context(&[Capability::Log], &[]);
        context.limits.fuel = 50_000_000;
        let event = Event { id: "evt-storm".into(), event_type: "any".into(), payload: "{}".into() };
        attacks.spawn(async move { host.invoke(&plugin, context, &event).await.result.is_err() });
    }
    let mut served = JoinSet::new();
    for n in 0..200 {
        let (Some(plugin), host) = (find("echo"), host.clone()) else { continue };
        let event = Event { id: format!("evt-{n}"), event_type: "ping".into(), payload: n.to_string() };
        let context = context(&[Capability::Config], &[]);
        served.spawn(async move { host.invoke(&plugin, context, &event).await.result.is_ok() });
    }
    let (contained, served) = tokio::join!(successes(attacks), successes(served));
    (served, contained, started.elapsed())
}

/// How many tasks finished and returned true.
async fn successes(mut set: JoinSet<bool>) -> usize {
    let mut count = 0;
    while let Some(result) = set.join_next().await {
        count += usize::from(matches!(result, Ok(true)));
    }
    count
}

/// A webhook receiver on loopback that remembers what it was sent.
struct Webhook {
    url: String,
    host: nexus_host::HostPattern,
    received: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    async fn start() -> anyhow::Result<Self> {
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = received.clone();
        let app = axum::Router::new().route(
            "/hooks/chat",
            axum::routing::post(move |body: String| async move {
                if let Ok(mut log) = log.lock() {
                    log.push(body);
                }
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/hooks/chat"),
            host: format!("127.0.0.1:{port}").parse().map_err(anyhow::Error::msg)?,
            received,
        })
    }
}
