//! Limits on input and on outbound HTTP, each ending the invocation with its numbers.

use std::time::Duration;

use nexus_host::{Capability, InvocationContext, InvocationError, Limit, LimitExceeded};
use nexus_sample_plugins::{CHAT_NOTIFIER, ECHO};

use crate::common::*;

fn notifier(hook: &Webhook, path: &str) -> InvocationContext {
    let mut context = all_capabilities();
    context.secrets = [("webhook-url".to_string(), hook.url(path))].into_iter().collect();
    context.grants.allowed_hosts = vec![hook.allowed()];
    context
}

fn signup() -> nexus_host::Event {
    event("user.signup", r#"{"email":"ada@example.com","name":"Ada"}"#)
}

fn limit(limit: Limit, used: u64, max: u64) -> Result<nexus_host::Outcome, InvocationError> {
    Err(InvocationError::LimitExceeded(LimitExceeded { limit, used, max }))
}

#[test]
fn oversized_input_is_refused_before_the_plugin_runs() {
    block_on(async {
        let mut context = context(&[Capability::Config]);
        context.limits.input_bytes = 10;
        let run = invoke(ECHO, context, &event("x", "12345678901")).await;
        assert_eq!(run.result, limit(Limit::InputBytes, 11, 10));
        assert_eq!(run.report.fuel_used, 0);
    })
}

#[test]
fn outbound_request_count_is_limited() {
    block_on(async {
        let hook = Webhook::start().await;
        let mut context = notifier(&hook, "/ok");
        context.limits.http_requests = 0;
        let run = invoke(CHAT_NOTIFIER, context, &signup()).await;
        assert_eq!(run.result, limit(Limit::HttpRequests, 1, 0));
        assert!(hook.requests().is_empty());
    })
}

#[test]
fn outbound_request_time_is_limited() {
    block_on(async {
        let hook = Webhook::start().await;
        let mut context = notifier(&hook, "/slow");
        context.limits.http_timeout = Duration::from_millis(200);
        let run = invoke(CHAT_NOTIFIER, context, &signup()).await;
        assert_eq!(run.result, limit(Limit::HttpTimeoutMs, 201, 200));
    })
}

#[test]
fn outbound_request_and_response_sizes_are_limited() {
    block_on(async {
        let hook = Webhook::start().await;
        let mut context = notifier(&hook, "/ok");
        context.limits.http_request_bytes = 16;
        let run = invoke(CHAT_NOTIFIER, context, &signup()).await;
        let body = r##"{"channel":"#general","event_id":"evt-1","text":"New signup: Ada <ada@example.com>","username":"Nexus"}"##;
        assert_eq!(run.result, limit(Limit::HttpRequestBytes, body.len() as u64, 16));

        let mut context = notifier(&hook, "/big");
        context.limits.http_response_bytes = 1000;
        let run = invoke(CHAT_NOTIFIER, context, &signup()).await;
        let hit = match run.result {
            Err(InvocationError::LimitExceeded(hit)) => hit,
            other => panic!("expected a limit, got {other:?}"),
        };
        assert_eq!((hit.limit, hit.max), (Limit::HttpResponseBytes, 1000));
        assert!(hit.used > 1000 && hit.used <= 64 << 10, "{hit:?}");
    })
}

#[test]
fn usage_meters_per_invocation_are_limited() {
    block_on(async {
        let hook = Webhook::start().await;
        let mut context = notifier(&hook, "/ok");
        context.limits.usage_meters = 0;
        let run = invoke(CHAT_NOTIFIER, context, &signup()).await;
        assert_eq!(run.result, limit(Limit::UsageMeters, 1, 0));
    })
}
