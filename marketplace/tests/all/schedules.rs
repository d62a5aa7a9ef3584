//! Plugins' schedules (issue #23): an install of a version that declares `[[schedules]]`
//! receives `schedule.tick` once per slot, however many workers look at once, with missed
//! slots skipped or caught up as the manifest says; a publish with a bad expression is
//! refused with the field named. On both backends, time moved by a manual billing clock.

use std::sync::Arc;

use axum::http::StatusCode;
use nexus_marketplace::billing::{BillingConfig, ManualClock, SandboxProvider};
use nexus_marketplace::runner::{schedules, worker};
use serde_json::{Value, json};

use super::common::{Env, Options, manifest_of, on_both};

const MINUTE: i64 = 60_000;
/// 2026-12-06 12:00:30 UTC.
const START: i64 = 1_796_558_430_000;

fn echo_with(id: &str, schedules: &str) -> String {
    manifest_of("echo").replacen("id = \"nexus-labs/echo\"", &format!("id = \"nexus-labs/{id}\""), 1).replacen(
        "[capabilities.config]",
        &format!("{schedules}\n[capabilities.config]"),
        1,
    )
}

async fn ticks(env: &Env, install: &str) -> Vec<Value> {
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT e.payload FROM deliveries d JOIN queued_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id \
         WHERE d.install_id = $1 ORDER BY d.seq",
    )
    .bind(install)
    .fetch_all(&env.market.db.pool)
    .await
    .unwrap();
    payloads.iter().map(|p| serde_json::from_str(p).unwrap()).collect()
}

#[test]
fn each_slot_ticks_once_and_missed_slots_are_skipped_or_caught_up() {
    on_both(|postgres| async move {
        let clock = Arc::new(ManualClock::at(START));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Arc::new(Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await);
        let minutely = "[[schedules]]\nid = \"minutely\"\ncron = \"* * * * *\"\n";
        let hourly = "[[schedules]]\nid = \"hourly\"\ncron = \"0 * * * *\"\nmissed = \"catch-up\"\n";
        env.publish_manifest(nexus_sample_plugins::ECHO, &echo_with("echo-cron", &format!("{minutely}{hourly}")))
            .await
            .unwrap();
        // A bad expression is refused at publish, naming the field.
        let bad = echo_with("echo-bad", "[[schedules]]\nid = \"fast\"\ncron = \"*/10 * * * * *\"\n");
        let refused = env.publish_manifest(nexus_sample_plugins::ECHO, &bad).await.unwrap_err();
        assert!(refused.to_string().contains("schedules[0].cron"), "{refused}");

        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo-cron", json!({})).await["id"].as_str().unwrap().to_string();
        assert_eq!(schedules::fire_due(&env.market).await.unwrap(), 0, "no slot yet");

        // The first minute's slot: four workers look at once; one tick is queued.
        clock.advance(30_000);
        let fired: usize = futures_util::future::join_all((0..4).map(|_| schedules::fire_due(&env.market)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        assert_eq!(fired, 1);
        let queued = ticks(&env, &install).await;
        assert_eq!(queued.len(), 1);
        assert_eq!(
            (queued[0]["schedule"].as_str(), queued[0]["slot"].as_str()),
            (Some("minutely"), Some("2026-12-06T12:01:00Z"))
        );
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let (_, history) = env.get(&format!("/v1/installs/{install}/invocations?outcome=ok"), &tenant).await;
        assert_eq!(history["total"], 1, "{history}");
        assert_eq!(history["items"][0]["event_type"], "schedule.tick");

        // Down for three hours: the minutely schedule skips to its latest slot, the hourly one
        // catches up each of its three.
        clock.advance(3 * 60 * MINUTE);
        assert_eq!(schedules::fire_due(&env.market).await.unwrap(), 4);
        assert_eq!(schedules::fire_due(&env.market).await.unwrap(), 0);
        let slots: Vec<(String, String)> = ticks(&env, &install)
            .await
            .iter()
            .skip(1)
            .map(|t| (t["schedule"].as_str().unwrap().to_string(), t["slot"].as_str().unwrap().to_string()))
            .collect();
        let mut slots = slots;
        slots.sort();
        let expected = [
            ("hourly", "2026-12-06T13:00:00Z"),
            ("hourly", "2026-12-06T14:00:00Z"),
            ("hourly", "2026-12-06T15:00:00Z"),
            ("minutely", "2026-12-06T15:01:00Z"),
        ];
        assert_eq!(slots, expected.map(|(s, t)| (s.to_string(), t.to_string())));

        // A paused install's slots pass without ticks; an uninstalled one's schedules go.
        let (status, _) =
            env.post(&format!("/v1/installs/{install}/invoke"), &tenant, json!({ "type": "x", "payload": {} })).await;
        assert_eq!(status, StatusCode::OK);
        sqlx::query("UPDATE installs SET status = 'paused', status_reason = 'paused by the test' WHERE id = $1")
            .bind(&install)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        clock.advance(MINUTE);
        assert_eq!(schedules::fire_due(&env.market).await.unwrap(), 0);
        let (status, _) = env.call("DELETE", &format!("/v1/installs/{install}"), Some(&tenant), None).await;
        assert_eq!(status, StatusCode::OK);
        clock.advance(60 * MINUTE);
        assert_eq!(schedules::fire_due(&env.market).await.unwrap(), 0);
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM install_schedules").fetch_one(&env.market.db.pool).await.unwrap();
        assert_eq!(left, 0);
    })
}
