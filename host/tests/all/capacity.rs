//! The host's capacity is the host's: a component that would take more than one
//! invocation's share of the instance pool is refused at load, one tenant never holds more
//! than its share of the slots, and running out of slots is `busy`, never a plugin failure.

use std::sync::Arc;
use std::time::Duration;

use nexus_host::{Capability, Host, HostConfig, InvocationError, Limit, LimitExceeded, LoadError};
use nexus_sample_plugins::{ECHO, INSTANCE_HOG, MEMORY_HOG, SLEEPER, SPLIT_MEMORY, TABLE_HOG};

use crate::common::*;

async fn refused(path: &str) -> LoadError {
    let bytes = nexus_sample_plugins::bytes(path).expect("built");
    match host().load(&bytes).await {
        Err(error) => error,
        Ok(_) => panic!("{path} loaded"),
    }
}

#[test]
fn components_over_the_per_plugin_maxima_are_refused_at_load() {
    block_on(async {
        for (path, what, max) in [
            (INSTANCE_HOG, "core module instances", 32),
            (MEMORY_HOG, "Wasm linear memories", 2),
            (TABLE_HOG, "tables", 8),
        ] {
            let error = refused(path).await;
            assert_eq!(error.code(), "exceeds_host_limits", "{path}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("the component exceeds the host's per-plugin limits: "), "{message}");
            assert!(message.contains(what), "{path}: {message}");
            assert!(message.contains(&format!("exceeds the configured maximum of {max} ")), "{path}: {message}");
        }
    })
}

#[test]
fn the_memory_limit_is_the_sum_over_all_memories() {
    block_on(async {
        let run = invoke(SPLIT_MEMORY, context(&[]), &event("x", "")).await;
        // Memory A grows to 601 pages, then B's growth to 601 would make 1202 pages in all.
        let page = 65_536;
        let used = 1202 * page;
        let exceeded = LimitExceeded { limit: Limit::MemoryBytes, used, max: 64 << 20 };
        assert_eq!(run.result, Err(InvocationError::LimitExceeded(exceeded)));
        assert_eq!(run.report.peak_memory_bytes, 602 * page);
    })
}

/// A host with four slots, two per tenant, and a short wait.
fn small_host() -> Arc<Host> {
    let config = HostConfig {
        max_concurrent: 4,
        max_concurrent_per_tenant: 2,
        slot_wait: Duration::from_millis(300),
        ..HostConfig::default()
    };
    Arc::new(Host::new(config).expect("host"))
}

#[test]
fn a_flooding_tenant_waits_for_its_share_while_others_are_served() {
    block_on(async {
        let host = small_host();
        let sleeper = host.load(&nexus_sample_plugins::bytes(SLEEPER).expect("built")).await.expect("load").0;
        let echo = host.load(&nexus_sample_plugins::bytes(ECHO).expect("built")).await.expect("load").0;

        let mut flood = tokio::task::JoinSet::new();
        for n in 0..6 {
            let (host, sleeper) = (host.clone(), sleeper.clone());
            let mut attacker = context(&[]);
            attacker.tenant = "attacker".into();
            attacker.install = format!("a{n}");
            flood.spawn(async move { host.invoke(&sleeper, attacker, &event("x", r#"{"ms":1200}"#)).await });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;

        // The attacker holds its two slots and waits for more; the victim is served at once.
        let mut victim = with_config(context(&[Capability::Config]), &[("prefix", "ok:")]);
        victim.tenant = "victim".into();
        for n in 0..5 {
            let run = host.invoke(&echo, victim.clone(), &event("x", &n.to_string())).await;
            assert_eq!(data(&run), format!("ok:{n}"));
        }

        let mut outcomes = Vec::new();
        while let Some(run) = flood.join_next().await {
            let run = run.expect("join");
            outcomes.push(match run.result {
                Ok(outcome) => outcome.data.unwrap_or_default(),
                Err(error) => error.code().to_string(),
            });
            if run.report.outcome == "busy" {
                assert_eq!(run.report.duration_us, 0, "a busy invocation never ran");
            }
        }
        outcomes.sort();
        assert_eq!(outcomes, ["busy", "busy", "busy", "busy", "slept 1200", "slept 1200"]);
        assert_eq!(host.metrics().invocations["busy"], 4);
    })
}

#[test]
fn busy_is_a_retryable_host_condition() {
    let busy = InvocationError::Busy { retry_after_ms: 1000 };
    assert_eq!(busy.code(), "busy");
    assert_eq!(busy.to_string(), "the host is busy: no invocation slot became free; retry in 1000 ms");
    let json = serde_json::to_value(&busy).expect("json");
    assert_eq!(json, serde_json::json!({ "code": "busy", "retry_after_ms": 1000 }));
}

#[test]
fn a_sleep_past_the_wall_clock_ends_there_without_burning_fuel() {
    block_on(async {
        let mut context = context(&[]);
        context.limits.wall_clock = Duration::from_millis(100);
        let run = invoke(SLEEPER, context, &event("x", r#"{"ms":5000}"#)).await;
        let Err(InvocationError::LimitExceeded(hit)) = run.result else { panic!("{:?}", run.result) };
        assert_eq!((hit.limit, hit.max), (Limit::WallClockMs, 100));
        assert!(hit.used > 100 && hit.used < 1_000, "{hit:?}");
        assert!(run.report.fuel_used < 1_000_000, "sleeping burns no fuel: {}", run.report.fuel_used);
    })
}
