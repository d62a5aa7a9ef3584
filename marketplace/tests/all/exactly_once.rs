//! The same event id delivered many times at once (parallel retries) applies to each
//! install once: one applied row, one KV effect, one billable usage row; every answer is
//! that delivery. On both backends.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::common::{Env, on_both};

#[test]
fn parallel_deliveries_of_one_event_apply_once_per_install() {
    on_both(|postgres| async move {
        let env = Arc::new(Env::new(postgres).await);
        let tenant = env.tenant("globex").await;
        let tax = env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let event = json!({ "id": "evt-dup", "type": "order.created", "payload": order });

        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (env, tenant, event) = (env.clone(), tenant.clone(), event.clone());
            sends.spawn(async move { env.post("/v1/events", &tenant, event).await });
        }
        let mut invocations = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        while let Some(answer) = sends.join_next().await {
            let (status, receipt) = answer.unwrap();
            assert_eq!(status, StatusCode::OK, "{receipt}");
            for delivery in receipt["deliveries"].as_array().unwrap() {
                assert_eq!(delivery["outcome"], "ok", "{delivery}");
                let install = delivery["install"].as_str().unwrap().to_string();
                invocations.entry(install).or_default().insert(delivery["invocation"].as_str().unwrap().to_string());
            }
        }
        // Every answer names the one applied invocation of each install.
        for install in [&tax, &echo] {
            let id = install["id"].as_str().unwrap();
            assert_eq!(invocations[id].len(), 1, "{id}: {:?}", invocations[id]);
            let (_, history) = env.get(&format!("/v1/installs/{id}/invocations?outcome=ok"), &tenant).await;
            assert_eq!(history["total"], 1, "{history}");
        }
        let pool = &env.market.db.pool;
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(tax["id"].as_str().unwrap())
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), "190");
        let billable: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(u.units), 0) AS BIGINT) FROM invocation_usage u JOIN invocations i ON i.id = u.invocation_id \
             WHERE i.install_id = $1",
        )
        .bind(tax["id"].as_str().unwrap())
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(billable, 1);
        // The hours billing reads counted the one applied invocation, not the refused ones.
        let hours: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) FROM usage_hours WHERE install_id = $1")
                .bind(tax["id"].as_str().unwrap())
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(hours, 1);
    })
}
