//! Every hostile plugin is contained: its invocation ends with the error naming what it did,
//! and the host keeps serving others meanwhile.

use std::time::Duration;

use nexus_host::{Capability, InvocationError, Limit, LimitExceeded, PluginErrorKind};
use nexus_sample_plugins::{
    DEEP_RECURSION, ECHO, FORBIDDEN_HOST, HUGE_OUTPUT, KV_FLOOD, LOG_FLOOD, MEMORY_BOMB, PANICKER, SNOOPER, SPIN_LOOP,
};

use crate::common::*;

fn limit(limit: Limit, used: u64, max: u64) -> Result<nexus_host::Outcome, InvocationError> {
    Err(InvocationError::LimitExceeded(LimitExceeded { limit, used, max }))
}

fn exceeded(result: &Result<nexus_host::Outcome, InvocationError>) -> LimitExceeded {
    match result {
        Err(InvocationError::LimitExceeded(limit)) => *limit,
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    block_on(async {
        let mut context = context(&[]);
        context.limits.fuel = 20_000_000;
        let run = invoke(SPIN_LOOP, context, &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::Fuel, 20_000_001, 20_000_000));
        assert_eq!(run.report.fuel_used, 20_000_000);
        assert_eq!(run.report.outcome, "limit_exceeded");
    })
}

#[test]
fn infinite_loop_with_fuel_to_spare_hits_the_wall_clock() {
    block_on(async {
        let mut context = context(&[]);
        context.limits.fuel = u64::MAX / 2;
        context.limits.wall_clock = Duration::from_millis(150);
        let run = invoke(SPIN_LOOP, context, &event("x", "")).await;
        let hit = exceeded(&run.result);
        assert_eq!((hit.limit, hit.max), (Limit::WallClockMs, 150));
        assert!(hit.used > 150, "{hit:?}");
    })
}

#[test]
fn memory_bomb_stops_at_the_memory_limit() {
    block_on(async {
        let mut context = context(&[]);
        context.limits.memory_bytes = 16 << 20;
        let run = invoke(MEMORY_BOMB, context, &event("x", "")).await;
        let hit = exceeded(&run.result);
        assert_eq!((hit.limit, hit.max), (Limit::MemoryBytes, 16 << 20));
        assert!(hit.used > 16 << 20 && hit.used <= 18 << 20, "{hit:?}");
        assert!(run.report.peak_memory_bytes <= 16 << 20 && run.report.peak_memory_bytes > 14 << 20);
    })
}

#[test]
fn deep_recursion_overflows_the_wasm_stack() {
    block_on(async {
        let run = invoke(DEEP_RECURSION, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::StackBytes, (512 << 10) + 1, 512 << 10));
    })
}

#[test]
fn huge_output_is_refused_by_the_output_limit() {
    block_on(async {
        let run = invoke(HUGE_OUTPUT, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::OutputBytes, 8 << 20, 1 << 20));
    })
}

#[test]
fn log_flood_ends_at_the_log_byte_limit() {
    block_on(async {
        let run = invoke(LOG_FLOOD, context(&[Capability::Log]), &event("x", "")).await;
        // Line n is "<n> " plus 120 bytes of "flood ": keep lines while they fit in 64 KiB.
        let line = |n: u64| n.to_string().len() as u64 + 121;
        let (mut kept, mut bytes) = (0, 0);
        while bytes + line(kept) <= 64 << 10 {
            bytes += line(kept);
            kept += 1;
        }
        assert_eq!(run.result, limit(Limit::LogBytes, bytes + line(kept), 64 << 10));
        assert_eq!(run.report.logs.len() as u64, kept);
    })
}

#[test]
fn kv_flood_hits_the_quota_and_commits_nothing() {
    block_on(async {
        let context = context(&[Capability::Kv]);
        let store = context.kv.clone();
        let run = invoke(KV_FLOOD, context, &event("x", "")).await;
        // 16 values of 64 KiB plus the keys flood/0..flood/15 pass 1 MiB.
        assert_eq!(run.result, limit(Limit::KvBytes, 16 * 65536 + 10 * 7 + 6 * 8, 1 << 20));
        assert_eq!(run.report.kv_writes, 0);
        let scope = nexus_host::KvScope { tenant: "t1".into(), install: "i1".into() };
        assert_eq!(store.list_keys(&scope, "").await.expect("list"), Vec::<String>::new());
    })
}

#[test]
fn request_to_a_host_not_allowed_is_refused_and_recorded() {
    block_on(async {
        let hook = Webhook::start().await;
        let mut context = context(&[Capability::Http]);
        context.grants.allowed_hosts = vec![hook.allowed()];
        let run = invoke(FORBIDDEN_HOST, context, &event("x", "http://metadata.internal/latest")).await;
        let denied = InvocationError::PluginError {
            kind: PluginErrorKind::Denied,
            message: "host metadata.internal not allowed".into(),
        };
        assert_eq!(run.result, Err(denied));
        assert_eq!(run.report.http_requests, 0);
        let denial =
            nexus_host::Denial { capability: Capability::Http, detail: "host metadata.internal:80 not allowed".into() };
        assert_eq!(run.report.denials, vec![denial]);
        // The same port on another loopback address is another host.
        let other_port = format!("http://127.0.0.1:{}/", hook.port.wrapping_add(1));
        let mut context = crate::common::context(&[Capability::Http]);
        context.grants.allowed_hosts = vec![hook.allowed()];
        let run = invoke(FORBIDDEN_HOST, context, &event("x", &other_port)).await;
        assert!(matches!(run.result, Err(InvocationError::PluginError { kind: PluginErrorKind::Denied, .. })));
        assert!(hook.requests().is_empty());
    })
}

#[test]
fn reading_a_file_finds_no_filesystem() {
    block_on(async {
        let run = invoke(SNOOPER, context(&Capability::ALL), &event("snoop.file", "/etc/passwd")).await;
        let error = InvocationError::PluginError {
            kind: PluginErrorKind::Denied,
            message: "read /etc/passwd: NotFound".into(),
        };
        assert_eq!(run.result, Err(error));
    })
}

#[test]
fn reading_the_environment_finds_nothing() {
    block_on(async {
        let run = invoke(SNOOPER, context(&Capability::ALL), &event("snoop.env", "")).await;
        let error = InvocationError::PluginError {
            kind: PluginErrorKind::Denied,
            message: "env HOME: environment variable not found".into(),
        };
        assert_eq!(run.result, Err(error));
    })
}

#[test]
fn panic_is_reported_with_its_message() {
    block_on(async {
        let run = invoke(PANICKER, context(&[]), &event("x", "")).await;
        let panicked = InvocationError::Panicked { message: "plugin gave up on event evt-1".into() };
        assert_eq!(run.result, Err(panicked));
        assert!(run.report.stderr.contains("panicked at"), "{}", run.report.stderr);
    })
}

#[test]
fn hostile_plugins_do_not_stop_others_from_being_served() {
    block_on(async {
        let mut slow = context(&[Capability::Log, Capability::Kv]);
        slow.limits.fuel = u64::MAX / 2;
        slow.limits.wall_clock = Duration::from_millis(1500);
        let spin = tokio::spawn(async move { invoke(SPIN_LOOP, slow, &event("x", "")).await });
        let bomb = tokio::spawn(async { invoke(MEMORY_BOMB, context(&[]), &event("x", "")).await });
        let panic = tokio::spawn(async { invoke(PANICKER, context(&[]), &event("x", "")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;

        let config = with_config(context(&[Capability::Config]), &[("prefix", "ok:")]);
        let mut served = Vec::new();
        for n in 0..40 {
            let run = invoke(ECHO, config.clone(), &event("x", &n.to_string())).await;
            served.push(data(&run));
        }
        assert!(!spin.is_finished(), "echo was served while the loop still ran");
        assert_eq!(served, (0..40).map(|n| format!("ok:{n}")).collect::<Vec<_>>());

        let spin = spin.await.expect("join");
        assert_eq!(exceeded(&spin.result).limit, Limit::WallClockMs);
        assert_eq!(exceeded(&bomb.await.expect("join").result).limit, Limit::MemoryBytes);
        assert!(matches!(panic.await.expect("join").result, Err(InvocationError::Panicked { .. })));
    })
}
