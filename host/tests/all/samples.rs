//! The useful sample plugins, each through the host exactly as the marketplace runs them.

use nexus_host::{Capability, InvocationError, Level, PluginErrorKind};
use nexus_sample_plugins::{CHAT_NOTIFIER, ECHO, PII_REDACTOR, TAX_CALCULATOR};

use crate::common::*;

#[test]
fn echo_returns_the_payload_with_the_configured_prefix() {
    block_on(async {
        let context = with_config(context(&[Capability::Config]), &[("prefix", "seen: ")]);
        let run = invoke(ECHO, context, &event("user.signup", r#"{"a":1}"#)).await;
        assert_eq!(data(&run), r#"seen: {"a":1}"#);
        assert_eq!(run.report.outcome, "ok");
        assert!(run.report.fuel_used > 0);
        assert!(run.report.peak_memory_bytes >= 64 << 10, "{}", run.report.peak_memory_bytes);
    })
}

fn notifier_context(hook: &Webhook, path: &str) -> nexus_host::InvocationContext {
    let mut context = with_config(all_capabilities(), &[("channel", "#billing")]);
    context.secrets = [("webhook-url".to_string(), hook.url(path))].into_iter().collect();
    context.grants.allowed_hosts = vec![hook.allowed()];
    context
}

#[test]
fn chat_notifier_posts_the_formatted_event_to_the_webhook() {
    block_on(async {
        let hook = Webhook::start().await;
        let payload = r#"{"invoice_id":"INV-7","customer":"Acme","amount_minor":123456,"currency":"EUR"}"#;
        let run = invoke(CHAT_NOTIFIER, notifier_context(&hook, "/ok"), &event("invoice.paid", payload)).await;
        assert_eq!(data(&run), r#"{"delivered":true,"status":200,"text":"Invoice INV-7 paid by Acme: 1234.56 EUR"}"#);
        let requests = hook.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/ok");
        assert_eq!(
            requests[0].body,
            r##"{"channel":"#billing","event_id":"evt-1","text":"Invoice INV-7 paid by Acme: 1234.56 EUR","username":"Nexus"}"##
        );
        assert_eq!(requests[0].headers["content-type"], "application/json");
        assert_eq!(requests[0].headers["idempotency-key"], "evt-1");
        assert_eq!(run.report.usage.get("messages-sent"), Some(&1));
        assert_eq!(run.report.http_requests, 1);
        assert_eq!(run.report.logs.len(), 1);
        assert_eq!(run.report.logs[0].level, Level::Info);
        assert_eq!(run.report.logs[0].message, "posted to webhook for invoice.paid evt-1");
    })
}

#[test]
fn chat_notifier_formats_each_event_type() {
    block_on(async {
        let hook = Webhook::start().await;
        let cases = [
            (
                "user.signup",
                r#"{"email":"ada@example.com","name":"Ada Lovelace"}"#,
                "New signup: Ada Lovelace <ada@example.com>",
            ),
            (
                "ticket.created",
                r#"{"ticket_id":"T-9","subject":"Printer on fire","priority":"high"}"#,
                "Ticket T-9 (high): Printer on fire",
            ),
            (
                "invoice.paid",
                r#"{"invoice_id":"I","customer":"C","amount_minor":1500,"currency":"JPY"}"#,
                "Invoice I paid by C: 1500 JPY",
            ),
            (
                "invoice.paid",
                r#"{"invoice_id":"I","customer":"C","amount_minor":-250,"currency":"USD"}"#,
                "Invoice I paid by C: -2.50 USD",
            ),
            (
                "invoice.paid",
                r#"{"invoice_id":"I","customer":"C","amount_minor":5,"currency":"KWD"}"#,
                "Invoice I paid by C: 0.005 KWD",
            ),
        ];
        for (event_type, payload, text) in cases {
            let run = invoke(CHAT_NOTIFIER, notifier_context(&hook, "/ok"), &event(event_type, payload)).await;
            let data: serde_json::Value = serde_json::from_str(&data(&run)).expect("json");
            assert_eq!(data["text"], text, "{event_type} {payload}");
        }
    })
}

#[test]
fn chat_notifier_reports_its_errors_by_kind() {
    block_on(async {
        let hook = Webhook::start().await;
        let paid = event("invoice.paid", r#"{"invoice_id":"I","customer":"C","amount_minor":1,"currency":"EUR"}"#);

        let failing = invoke(CHAT_NOTIFIER, notifier_context(&hook, "/fail"), &paid).await;
        let upstream =
            InvocationError::PluginError { kind: PluginErrorKind::Upstream, message: "webhook answered 500".into() };
        assert_eq!(failing.result, Err(upstream));
        assert!(failing.report.usage.is_empty(), "a failed delivery is not billed");

        let mut no_secret = notifier_context(&hook, "/ok");
        no_secret.secrets = Default::default();
        let missing = invoke(CHAT_NOTIFIER, no_secret, &paid).await;
        let config = InvocationError::PluginError {
            kind: PluginErrorKind::InvalidConfig,
            message: "secret webhook-url is not set".into(),
        };
        assert_eq!(missing.result, Err(config));

        let bad =
            invoke(CHAT_NOTIFIER, notifier_context(&hook, "/ok"), &event("invoice.paid", r#"{"invoice_id":"I"}"#))
                .await;
        assert_eq!(bad.result.as_ref().map_err(|e| e.code()).err(), Some("plugin_error"));
        assert!(matches!(&bad.result, Err(InvocationError::PluginError { kind: PluginErrorKind::InvalidPayload, .. })));

        let other = invoke(CHAT_NOTIFIER, notifier_context(&hook, "/ok"), &event("order.created", "{}")).await;
        let unsupported = InvocationError::PluginError {
            kind: PluginErrorKind::UnsupportedEvent,
            message: "chat-notifier does not handle order.created".into(),
        };
        assert_eq!(other.result, Err(unsupported));
        assert_eq!(hook.requests().len(), 1, "only the /fail attempt reached the server");
    })
}

#[test]
fn pii_redactor_masks_emails_phones_and_cards() {
    block_on(async {
        let payload = r#"{"note":"mail ada@example.com or call +44 20 7946 0958","card":"4242 4242 4242 4242","n":4111111111111111,"date":"2024-01-15"}"#;
        let run = invoke(PII_REDACTOR, all_capabilities(), &event("user.updated", payload)).await;
        assert_eq!(
            data(&run),
            r#"{"payload":{"card":"[card:4242]","date":"2024-01-15","n":"[card:1111]","note":"mail [email] or call [phone]"},"redactions":{"card":2,"email":1,"phone":1}}"#
        );
        assert_eq!(run.report.usage.get("payloads-scanned"), Some(&1));
        assert_eq!(run.report.logs[0].message, "redacted 4 values");

        let hidden = with_config(all_capabilities(), &[("keep-card-last4", "false")]);
        let run = invoke(
            PII_REDACTOR,
            hidden,
            &event("x", r#"["5555-5555-5555-4444", "order 4242424242424241", "(415) 555-0132."]"#),
        )
        .await;
        assert_eq!(
            data(&run),
            r#"{"payload":["[card]","order 4242424242424241","[phone]."],"redactions":{"card":1,"email":0,"phone":1}}"#
        );

        let broken = invoke(PII_REDACTOR, all_capabilities(), &event("x", "{not json")).await;
        assert!(matches!(
            broken.result,
            Err(InvocationError::PluginError { kind: PluginErrorKind::InvalidPayload, .. })
        ));
    })
}

fn tax_context(kv: std::sync::Arc<nexus_host::MemoryKv>, rounding: &str) -> nexus_host::InvocationContext {
    let mut context =
        with_config(all_capabilities(), &[("rates", "DE=1900, FR=2000,US-CA=725"), ("rounding", rounding)]);
    context.kv = kv;
    context
}

fn order(id: &str, event_type: &str, amount: i64, region: &str) -> nexus_host::Event {
    let payload = format!(r#"{{"order_id":"o-1","amount_minor":{amount},"currency":"EUR","region":"{region}"}}"#);
    nexus_host::Event { id: id.into(), event_type: event_type.into(), payload }
}

#[test]
fn tax_calculator_keeps_running_totals_in_kv_and_ignores_replays() {
    block_on(async {
        let kv = std::sync::Arc::new(nexus_host::MemoryKv::new());
        let first =
            invoke(TAX_CALCULATOR, tax_context(kv.clone(), "half-even"), &order("e1", "order.created", 10000, "DE"))
                .await;
        assert_eq!(
            data(&first),
            r#"{"amount_minor":10000,"currency":"EUR","order_id":"o-1","rate_bp":1900,"region":"DE","region_tax_total_minor":1900,"replayed":false,"tax_minor":1900,"total_with_tax_minor":11900}"#
        );
        assert_eq!(first.report.usage.get("tax-calculations"), Some(&1));
        assert_eq!(first.report.kv_writes, 2);

        let second =
            invoke(TAX_CALCULATOR, tax_context(kv.clone(), "half-even"), &order("e2", "order.created", 12345, "DE"))
                .await;
        let second: serde_json::Value = serde_json::from_str(&data(&second)).expect("json");
        assert_eq!((second["tax_minor"].as_i64(), second["region_tax_total_minor"].as_i64()), (Some(2346), Some(4246)));

        let replay =
            invoke(TAX_CALCULATOR, tax_context(kv.clone(), "half-even"), &order("e1", "order.created", 10000, "DE"))
                .await;
        let replay_data: serde_json::Value = serde_json::from_str(&data(&replay)).expect("json");
        assert_eq!(replay_data["replayed"], true);
        assert_eq!(replay_data["region_tax_total_minor"], 1900, "the answer given the first time");
        assert!(replay.report.usage.is_empty(), "replays are not billed");

        let refund =
            invoke(TAX_CALCULATOR, tax_context(kv.clone(), "half-even"), &order("e3", "order.refunded", 10000, "DE"))
                .await;
        let refund: serde_json::Value = serde_json::from_str(&data(&refund)).expect("json");
        assert_eq!(refund["region_tax_total_minor"], 2346);
    })
}

#[test]
fn tax_calculator_rounds_half_even_or_half_up() {
    block_on(async {
        for (rounding, amount, region, expected) in
            [("half-even", 25, "FR", 5), ("half-even", 50, "FR", 10), ("half-even", 12345, "US-CA", 895)]
        {
            let kv = std::sync::Arc::new(nexus_host::MemoryKv::new());
            let run =
                invoke(TAX_CALCULATOR, tax_context(kv, rounding), &order("e", "order.created", amount, region)).await;
            let data: serde_json::Value = serde_json::from_str(&data(&run)).expect("json");
            assert_eq!(data["tax_minor"], expected, "{rounding} {amount} {region}");
        }
        let mut context = tax_context(std::sync::Arc::new(nexus_host::MemoryKv::new()), "half-up");
        context.config.insert("rates".into(), "XX=1000".into());
        let half_up = invoke(TAX_CALCULATOR, context, &order("e", "order.created", 25, "XX")).await;
        let data_up: serde_json::Value = serde_json::from_str(&data(&half_up)).expect("json");
        assert_eq!(data_up["tax_minor"], 3);
        let mut context = tax_context(std::sync::Arc::new(nexus_host::MemoryKv::new()), "half-even");
        context.config.insert("rates".into(), "XX=1000".into());
        let half_even = invoke(TAX_CALCULATOR, context, &order("e", "order.created", 25, "XX")).await;
        let data_even: serde_json::Value = serde_json::from_str(&data(&half_even)).expect("json");
        assert_eq!(data_even["tax_minor"], 2);

        let unknown = invoke(
            TAX_CALCULATOR,
            tax_context(std::sync::Arc::new(nexus_host::MemoryKv::new()), "half-even"),
            &order("e", "order.created", 1, "ES"),
        )
        .await;
        let error = InvocationError::PluginError {
            kind: PluginErrorKind::InvalidPayload,
            message: "no tax rate for region ES".into(),
        };
        assert_eq!(unknown.result, Err(error));
    })
}
