//! Limits that hold for everything a plugin can grow or return: host calls cost fuel, refused
//! calls are recorded within bounds, staged KV writes, actions, error messages, resource
//! handles and host-allocated buffers are limited, and outbound HTTP never reaches internal
//! addresses or carries routing headers the plugin chose.

use nexus_host::limits::{MAX_DENIAL_RECORDS, MAX_ERROR_MESSAGE_BYTES, MAX_KEPT_TEXT_BYTES};
use nexus_host::{Capability, Denial, Host, HostConfig, InvocationError, Limit, LimitExceeded, PluginErrorKind};
use nexus_sample_plugins::{
    ACTION_FLOOD, ERROR_FLOOD, FORBIDDEN_HOST, HEADER_SMUGGLER, HOST_CALL_LOOP, KV_DELETE_FLOOD, RANDOM_HOG,
    RESOURCE_HOG,
};

use crate::common::*;

fn limit(limit: Limit, used: u64, max: u64) -> Result<nexus_host::Outcome, InvocationError> {
    Err(InvocationError::LimitExceeded(LimitExceeded { limit, used, max }))
}

#[test]
fn a_loop_of_granted_host_calls_ends_by_fuel() {
    block_on(async {
        let mut context = context(&[Capability::Config]);
        context.limits.fuel = 10_000_000;
        let run = invoke(HOST_CALL_LOOP, context, &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::Fuel, 10_000_001, 10_000_000));
        assert!(run.report.denials.is_empty());
    })
}

#[test]
fn a_flood_of_refused_calls_ends_by_fuel_and_keeps_a_bounded_record() {
    block_on(async {
        let mut context = context(&[]);
        context.limits.fuel = 50_000_000;
        let run = invoke(HOST_CALL_LOOP, context, &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::Fuel, 50_000_001, 50_000_000));
        assert_eq!(run.report.denials.len(), MAX_DENIAL_RECORDS);
        let first = Denial { capability: Capability::Config, detail: "capability config not granted".into() };
        assert_eq!(run.report.denials[0], first);
        // 50 M fuel at 5,000 a call pays for at most 10,000 calls, the loop's own operators
        // for a few less.
        let calls = run.report.denied_calls();
        assert!((9_000..=10_000).contains(&calls), "{calls} refused calls");
        assert_eq!(run.report.denials_dropped, calls - MAX_DENIAL_RECORDS as u64);
    })
}

#[test]
fn staged_deletes_count_against_the_staged_write_limit() {
    block_on(async {
        let run = invoke(KV_DELETE_FLOOD, context(&[Capability::Kv]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::KvWrites, 10_001, 10_000));
        assert_eq!(run.report.kv_writes, 0);
    })
}

#[test]
fn a_million_empty_actions_exceed_the_action_limit() {
    block_on(async {
        let run = invoke(ACTION_FLOOD, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::Actions, 1_000_000, 1_000));
        // Within the count, empty actions still cost their framing against the output limit.
        let mut context = crate::common::context(&[]);
        context.limits.actions = 2_000_000;
        let run = invoke(ACTION_FLOOD, context, &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::OutputBytes, 24_000_000, 1 << 20));
    })
}

#[test]
fn an_error_message_counts_against_the_output_limit_and_is_clipped() {
    block_on(async {
        let run = invoke(ERROR_FLOOD, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::OutputBytes, 8 << 20, 1 << 20));
        let mut context = crate::common::context(&[]);
        context.limits.output_bytes = 16 << 20;
        let run = invoke(ERROR_FLOOD, context, &event("x", "")).await;
        let Err(InvocationError::PluginError { kind: PluginErrorKind::Internal, message }) = run.result else {
            panic!("expected the plugin's error, got {:?}", run.result);
        };
        assert_eq!(message.len(), MAX_ERROR_MESSAGE_BYTES - 3 + '…'.len_utf8());
        assert_eq!(message, format!("{}…", "e".repeat(MAX_ERROR_MESSAGE_BYTES - 3)));
    })
}

#[test]
fn random_bytes_are_refused_before_the_host_allocates_them() {
    block_on(async {
        let run = invoke(RANDOM_HOG, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::MemoryBytes, 1 << 40, 64 << 20));
    })
}

#[test]
fn resource_handles_have_a_named_limit() {
    block_on(async {
        let run = invoke(RESOURCE_HOG, context(&[]), &event("x", "")).await;
        assert_eq!(run.result, limit(Limit::ResourceHandles, 1_001, 1_000));
    })
}

#[test]
fn a_refused_host_name_is_clipped_where_the_host_keeps_it() {
    block_on(async {
        let long = format!("http://{}.example/", "a".repeat(10_000));
        let run = invoke(FORBIDDEN_HOST, context(&[Capability::Http]), &event("x", &long)).await;
        let [denial] = run.report.denials.as_slice() else { panic!("{:?}", run.report.denials) };
        assert!(denial.detail.len() <= MAX_KEPT_TEXT_BYTES, "{} bytes kept", denial.detail.len());
        assert!(denial.detail.starts_with("host aaaa") && denial.detail.ends_with('…'), "{}", denial.detail);
        let Err(InvocationError::PluginError { kind: PluginErrorKind::Denied, message }) = run.result else {
            panic!("{:?}", run.result);
        };
        assert!(message.len() < 300, "the name the plugin got back is clipped too: {} bytes", message.len());
    })
}

/// A host with the default outbound policy: public addresses only.
fn hosted() -> &'static Host {
    static HOST: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
    HOST.get_or_init(|| Host::new(HostConfig::default()).expect("host"))
}

#[test]
fn outbound_http_never_reaches_internal_addresses_by_default() {
    block_on(async {
        let hook = Webhook::start().await;
        let bytes = nexus_sample_plugins::bytes(FORBIDDEN_HOST).expect("built");
        let plugin = hosted().load(&bytes).await.expect("load").0;
        let port = hook.port;
        let literal = |ip: &str| format!("address {ip} is internal; outbound HTTP may not reach it");
        // A name is checked on the address it resolves to, the one actually connected to
        // (localhost is 127.0.0.1 or ::1, whichever the system lists first).
        let resolved =
            |ip: &str| format!("localhost resolves to {ip}, an internal address outbound HTTP may not reach");
        let cases = [
            (format!("http://127.0.0.1:{port}/ok"), "127.0.0.1", vec![literal("127.0.0.1")]),
            (format!("http://[::ffff:127.0.0.1]:{port}/ok"), "[::ffff:7f00:1]", vec![literal("::ffff:127.0.0.1")]),
            (format!("http://[::1]:{port}/ok"), "[::1]", vec![literal("::1")]),
            (format!("http://localhost:{port}/ok"), "localhost", vec![resolved("127.0.0.1"), resolved("::1")]),
        ];
        for (url, host, details) in cases {
            let mut context = context(&[Capability::Http]);
            context.grants.allowed_hosts = vec![format!("{host}:{port}").parse().expect("pattern")];
            let run = hosted().invoke(&plugin, context, &event("x", &url)).await;
            let denied = InvocationError::PluginError {
                kind: PluginErrorKind::Denied,
                message: format!("host {host} not allowed"),
            };
            assert_eq!(run.result, Err(denied), "{url}");
            let [denial] = run.report.denials.as_slice() else { panic!("{url}: {:?}", run.report.denials) };
            assert_eq!(denial.capability, Capability::Http);
            assert!(details.contains(&denial.detail), "{url}: {}", denial.detail);
        }
        assert!(hook.requests().is_empty(), "nothing reached loopback");

        // The operator can allow a range; then the same request goes through.
        let allowing = Host::new(HostConfig {
            outbound: nexus_host::OutboundPolicy::allowing(["127.0.0.0/8".parse().expect("cidr")]),
            ..HostConfig::default()
        })
        .expect("host");
        let plugin = allowing.load(&bytes).await.expect("load").0;
        let mut context = context(&[Capability::Http]);
        context.grants.allowed_hosts = vec![hook.allowed()];
        let run = allowing.invoke(&plugin, context, &event("x", &hook.url("/ok"))).await;
        assert_eq!(data(&run), "200");
        assert_eq!(hook.requests().len(), 1);
    })
}

#[test]
fn routing_and_framing_headers_are_the_hosts_to_set() {
    block_on(async {
        let hook = Webhook::start().await;
        let send = |headers: serde_json::Value| {
            let mut context = context(&[Capability::Http]);
            context.grants.allowed_hosts = vec![hook.allowed()];
            let payload = serde_json::json!({ "url": hook.url("/ok"), "headers": headers }).to_string();
            async move { invoke(HEADER_SMUGGLER, context, &event("x", &payload)).await }
        };
        for header in
            ["Host", "transfer-encoding", "Connection", "content-length", "X-Forwarded-For", "proxy-authorization"]
        {
            let run = send(serde_json::json!([[header, "internal.example"]])).await;
            let message = format!("invalid argument: header `{header}` is set by the host, not the plugin");
            assert_eq!(run.result, Err(InvocationError::PluginError { kind: PluginErrorKind::Internal, message }));
        }
        assert!(hook.requests().is_empty());
        // `Host` naming the URL's own host, and ordinary headers, pass.
        let own = format!("127.0.0.1:{}", hook.port);
        let run = send(serde_json::json!([["Host", own], ["x-signature", "abc"]])).await;
        assert_eq!(data(&run), "200");
        let received = hook.requests();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].headers["host"], own);
        assert_eq!(received[0].headers["x-signature"], "abc");
    })
}
