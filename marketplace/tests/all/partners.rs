//! Co-marketing (issue #24): featured placements with a start and an end, within the
//! marketplace's slots and for partners at or above the tier operators choose; the catalog
//! features what is in force. On both backends.

use std::sync::Arc;

use axum::http::StatusCode;
use nexus_marketplace::billing::{BillingConfig, ManualClock, SandboxProvider};
use nexus_marketplace::co_marketing;
use serde_json::{Value, json};

use super::common::{Env, Options, on_both};

const DAY: i64 = 86_400_000;

async fn featured(env: &Env) -> Vec<String> {
    let (_, page) = env.call("GET", "/v1/catalog?featured=true&sort=name", None, None).await;
    page["items"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
}

async fn place(env: &Env, plugin: &str, starts_at: i64, ends_at: i64) -> (StatusCode, Value) {
    let body = json!({ "plugin": plugin, "note": "Partner pick", "starts_at": starts_at, "ends_at": ends_at });
    env.post("/v1/featured-placements", &env.operator, body).await
}

#[test]
fn placements_run_from_start_to_end_within_the_slots_for_partners_of_the_tier() {
    on_both(|postgres| async move {
        let now = nexus_registry::db::now_ms();
        let clock = Arc::new(ManualClock::at(now));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        let operator = env.operator.clone();
        let call = |method: &'static str, uri: &'static str, body: Value| {
            let (env, operator) = (&env, operator.clone());
            async move { env.call(method, uri, Some(&operator), Some(&body.to_string())).await }
        };

        // Rules: two at once, Select partners and above.
        let (status, _) =
            call("PUT", "/v1/featured-placements/rules", json!({ "slots": 2, "min_tier": "select" })).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "no such tier yet");
        assert_eq!(
            call("PUT", "/v1/partner-tiers/registered", json!({ "name": "Registered", "rank": 1 })).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call("PUT", "/v1/partner-tiers/select", json!({ "name": "Select", "rank": 2, "automatic": false })).await.0,
            StatusCode::OK
        );
        let (status, rules) =
            call("PUT", "/v1/featured-placements/rules", json!({ "slots": 2, "min_tier": "select" })).await;
        assert_eq!((status, rules), (StatusCode::OK, json!({ "slots": 2, "min_tier": "select" })));
        let (_, public) = env.call("GET", "/v1/featured-placements/rules", None, None).await;
        assert_eq!(public["slots"], 2);

        // Refused with what is wrong, and nothing kept.
        for (plugin, starts_at, ends_at, status, code) in [
            ("nope", now, now + DAY, StatusCode::BAD_REQUEST, "invalid_id"),
            ("nexus-labs/nothing", now, now + DAY, StatusCode::NOT_FOUND, "not_found"),
            ("nexus-labs/echo", now + DAY, now, StatusCode::BAD_REQUEST, "invalid_request"),
            ("nexus-labs/echo", now - 2 * DAY, now - DAY, StatusCode::BAD_REQUEST, "invalid_request"),
            ("nexus-labs/echo", now, now + DAY, StatusCode::FORBIDDEN, "forbidden"),
        ] {
            let (answer, refused) = place(&env, plugin, starts_at, ends_at).await;
            assert_eq!((answer, refused["error"]["code"].as_str()), (status, Some(code)), "{plugin}: {refused}");
        }
        let (status, _) = env
            .post("/v1/featured-placements", &env.publisher, json!({ "plugin": "nexus-labs/echo", "note": "x" }))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (_, none) = env.call("GET", "/v1/featured-placements", None, None).await;
        assert_eq!(none, json!([]));

        // nexus-labs is made Select: echo now for ten days, tax-calculator from day 5 to 15.
        assert_eq!(call("PUT", "/v1/publishers/nexus-labs/tier", json!({ "tier": "select" })).await.0, StatusCode::OK);
        let (status, echo) = place(&env, "nexus-labs/echo", now, now + 10 * DAY).await;
        assert_eq!(status, StatusCode::CREATED, "{echo}");
        let (status, tax) = place(&env, "nexus-labs/tax-calculator", now + 5 * DAY, now + 15 * DAY).await;
        assert_eq!(status, StatusCode::CREATED, "{tax}");
        // Days 6 to 7: both slots are taken.
        let (status, full) = place(&env, "nexus-labs/chat-notifier", now + 6 * DAY, now + 7 * DAY).await;
        assert_eq!((status, &full["error"]["code"]), (StatusCode::CONFLICT, &json!("featured_slots_full")), "{full}");
        // Days 11 to 12 have one slot: of four asking at once, one gets it.
        let asking = [
            "nexus-labs/chat-notifier",
            "nexus-labs/pii-redactor",
            "nexus-labs/chat-notifier",
            "nexus-labs/pii-redactor",
        ]
        .map(|plugin| place(&env, plugin, now + 11 * DAY, now + 12 * DAY));
        let answers = futures_util::future::join_all(asking).await;
        assert_eq!(answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count(), 1, "{answers:?}");
        assert!(
            answers
                .iter()
                .filter(|(status, _)| *status != StatusCode::CREATED)
                .all(|(s, _)| *s == StatusCode::CONFLICT)
        );
        let (_, listed) = env.call("GET", "/v1/featured-placements", None, None).await;
        assert_eq!(listed.as_array().unwrap().len(), 3);

        // The catalog features what is in force, as the clock moves and the check applies it.
        assert_eq!(featured(&env).await, ["echo"]);
        clock.advance(6 * DAY);
        co_marketing::apply(&env.market).await.unwrap();
        assert_eq!(featured(&env).await, ["echo", "tax-calculator"]);
        clock.advance(5 * DAY);
        co_marketing::apply(&env.market).await.unwrap();
        assert_eq!(featured(&env).await.len(), 2, "tax-calculator and the one that won day 11");
        assert!(!featured(&env).await.contains(&"echo".to_string()));
        // Ended by hand: at once.
        let uri = format!("/v1/featured-placements/{}", tax["id"].as_str().unwrap());
        let (status, _) = env.call("DELETE", &uri, Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!featured(&env).await.contains(&"tax-calculator".to_string()));
        let (status, _) = env.call("DELETE", &uri, Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "ended once");
        let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'listing.%featured'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(audited, 4, "three placements and one end");
    })
}
