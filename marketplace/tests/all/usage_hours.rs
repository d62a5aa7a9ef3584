//! Usage rolled up per hour (`records/usage_hours.rs`): billed units equal the raw sum of the
//! usage rows in a segment whose edges fall mid-hour, inside one hour, or that saw no usage,
//! through a billing run (the batched writer's rows) and a plan change (`usage_line`, rows
//! committed with KV writes); `ledger verify` catches an hour that disagrees with its
//! invocations and a rebuild mends it. On both backends.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::{BillingConfig, DAY_MS, ManualClock, SandboxProvider};
use serde_json::{Value, json};

use super::common::{Env, Options, on_both};

/// 2026-11-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;
const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// The usage check's name in `ledger verify`.
const CHECK: &str = "usage_hours sums the usage rows of applied invocations per install, meter and hour";

struct Market {
    env: Env,
    clock: Arc<ManualClock>,
}

impl Market {
    async fn new(postgres: bool) -> Self {
        let clock = Arc::new(ManualClock::at(NOV_1));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        for (plugin, key, meter, unit) in [
            ("nexus-labs/pii-redactor", "metered", "payloads-scanned", 3),
            ("nexus-labs/tax-calculator", "metered", "tax-calculations", 5),
            ("nexus-labs/tax-calculator", "metered-plus", "tax-calculations", 7),
        ] {
            let plan = json!({ "key": key, "name": key, "model": "usage", "currency": "EUR",
                "usage": { "meter": meter, "unit_minor": unit } });
            let (status, body) = env.post(&format!("/v1/plugins/{plugin}/plans"), &env.publisher, plan).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        Self { env, clock }
    }

    /// A tenant with `plugin` installed on its metered plan at `at`: (token, install id).
    async fn install(&self, tenant: &str, plugin: &str, at: i64) -> (String, String) {
        self.clock.set(at);
        let token = self.env.tenant(tenant).await;
        let extra = if plugin.ends_with("tax-calculator") {
            json!({ "plan": "metered", "config": { "rates": "DE=1900" } })
        } else {
            json!({ "plan": "metered" })
        };
        let install = self.env.install(&token, plugin, extra).await;
        (token, install["id"].as_str().unwrap().to_string())
    }

    /// One event for the tenant at each of `times` (each reports one unit).
    async fn events(&self, token: &str, times: &[i64]) {
        for at in times {
            self.clock.set(*at);
            let payload =
                json!({ "order_id": format!("o-{at}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
            let event = json!({ "id": format!("evt-{at}"), "type": "order.created", "payload": payload });
            let (status, receipt) = self.env.post("/v1/events", token, event).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
            assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");
        }
    }

    async fn uninstall(&self, token: &str, install: &str, at: i64) {
        self.clock.set(at);
        let (status, body) = self.env.call("DELETE", &format!("/v1/installs/{install}"), Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The usage charges of `tenant`'s `install`, oldest period first.
    async fn usage_charges(&self, tenant: &str, install: &str) -> Vec<Value> {
        let (status, page) =
            self.env.get(&format!("/v1/charges?tenant={tenant}&per_page=100"), &self.env.operator).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut charges: Vec<Value> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["install"] == install && c["line"].as_str().unwrap().starts_with("usage:"))
            .cloned()
            .collect();
        charges.sort_by_key(|c| c["period_start"].as_i64());
        charges
    }

    /// The units of `install`'s applied invocations that started in `[from, to)`, summed from
    /// the invocation rows as billing summed them before `usage_hours`.
    async fn raw_units(&self, install: &str, from: i64, to: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(u.units), 0) AS BIGINT) FROM invocation_usage u \
             JOIN invocations i ON i.id = u.invocation_id \
             WHERE i.install_id = $1 AND i.outcome = 'ok' AND i.started_at >= $2 AND i.started_at < $3",
        )
        .bind(install)
        .bind(from)
        .bind(to)
        .fetch_one(&self.env.market.db.pool)
        .await
        .unwrap()
    }

    /// `install`'s usage charges as (period start, period end, units reported, amount), each
    /// checked against the raw sum of its period.
    async fn billed(&self, tenant: &str, install: &str) -> Vec<(i64, i64, i64, i64)> {
        let mut out = Vec::new();
        for charge in self.usage_charges(tenant, install).await {
            let (start, end) = (charge["period_start"].as_i64().unwrap(), charge["period_end"].as_i64().unwrap());
            let units = charge["detail"]["units_reported"].as_i64().unwrap();
            assert_eq!(units, self.raw_units(install, start, end).await, "{charge}");
            out.push((start, end, units, charge["amount_minor"].as_i64().unwrap()));
        }
        out
    }

    async fn verify(&self) -> Value {
        let (status, report) = self.env.get("/v1/ledger/verify", &self.env.operator).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        report
    }

    /// `usage_hours` of `install` as (hour start, units), in order.
    async fn hours(&self, install: &str) -> Vec<(i64, i64)> {
        sqlx::query_as("SELECT hour_start, units FROM usage_hours WHERE install_id = $1 ORDER BY hour_start")
            .bind(install)
            .fetch_all(&self.env.market.db.pool)
            .await
            .unwrap()
    }
}

fn usage_check(report: &Value) -> &Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == CHECK).unwrap()
}

#[test]
fn billed_usage_equals_the_raw_sum_across_hour_boundaries_and_segment_edges() {
    on_both(|postgres| async move {
        let m = Market::new(postgres).await;
        let pii = "nexus-labs/pii-redactor";

        // Installed 00:20 (mid-hour), uninstalled Nov 14 02:30 (mid-hour): the partial hours
        // at both edges come from the invocation rows, the hours between from usage_hours.
        let start = NOV_1 + 20 * MINUTE + 7;
        let end = NOV_1 + 13 * DAY_MS + 2 * HOUR + 30 * MINUTE;
        let (alpha, alpha_id) = m.install("alpha", pii, start).await;
        let first_edge = [start, start + 1, NOV_1 + HOUR - 1];
        let whole = [NOV_1 + HOUR, NOV_1 + HOUR + 1, NOV_1 + 3 * HOUR - 1, NOV_1 + 9 * DAY_MS + 5 * MINUTE];
        let last_edge = [NOV_1 + 13 * DAY_MS + 2 * HOUR, end - 1];
        m.events(&alpha, &[first_edge.as_slice(), &whole, &last_edge].concat()).await;
        m.uninstall(&alpha, &alpha_id, end).await;

        // Installed and uninstalled within one hour.
        let (beta, beta_id) = m.install("beta", pii, NOV_1 + DAY_MS + 10 * MINUTE).await;
        m.events(&beta, &[NOV_1 + DAY_MS + 15 * MINUTE, NOV_1 + DAY_MS + 49 * MINUTE]).await;
        m.uninstall(&beta, &beta_id, NOV_1 + DAY_MS + 50 * MINUTE).await;

        // Never used: a segment of many hours with no usage at all.
        let (gamma, gamma_id) = m.install("gamma", pii, start).await;
        m.uninstall(&gamma, &gamma_id, NOV_1 + 4 * DAY_MS + 30 * MINUTE).await;

        // Ends at a plan change (the usage so far billed at once by `usage_line`), on a
        // plugin whose invocations commit with their KV writes.
        let (delta, delta_id) = m.install("delta", "nexus-labs/tax-calculator", start).await;
        let change = NOV_1 + 2 * DAY_MS + 45 * MINUTE;
        m.events(&delta, &[start + 1, NOV_1 + 2 * HOUR, NOV_1 + 2 * DAY_MS, change - 1]).await;
        m.clock.set(change);
        let request = Request::builder()
            .method("PUT")
            .uri(format!("/v1/installs/{delta_id}/plan"))
            .header(header::AUTHORIZATION, format!("Bearer {delta}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "move-1")
            .body(Body::from(json!({ "plan": "metered-plus" }).to_string()))
            .unwrap();
        let (status, _, body) = m.env.raw(request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        // After the change, within the change's hour, then in later hours.
        m.events(&delta, &[change, change + 10 * MINUTE, NOV_1 + 3 * DAY_MS + 7]).await;

        // Every hour holds what its invocations reported.
        let hour = |at: i64| at - at % HOUR;
        assert_eq!(
            m.hours(&alpha_id).await,
            [
                (hour(start), 3),
                (NOV_1 + HOUR, 2),
                (NOV_1 + 2 * HOUR, 1),
                (hour(whole[3]), 1),
                (NOV_1 + 13 * DAY_MS + 2 * HOUR, 2)
            ]
        );

        // Past the end of delta's first period (Dec 1, 00:20:00.007).
        m.clock.set(NOV_1 + 31 * DAY_MS);
        let (status, report) = m.env.post("/v1/billing/runs", &m.env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{report}");

        assert_eq!(m.billed("alpha", &alpha_id).await, [(start, end, 9, 27)]);
        assert_eq!(
            m.billed("beta", &beta_id).await,
            [(NOV_1 + DAY_MS + 10 * MINUTE, NOV_1 + DAY_MS + 50 * MINUTE, 2, 6)]
        );
        assert!(m.billed("gamma", &gamma_id).await.iter().all(|(_, _, units, amount)| (*units, *amount) == (0, 0)));
        assert_eq!(
            m.billed("delta", &delta_id).await,
            [(start, change, 4, 20), (change, NOV_1 + 30 * DAY_MS + 20 * MINUTE + 7, 3, 21)]
        );

        let report = m.verify().await;
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(usage_check(&report)["ok"], true, "{report}");
    });
}

#[test]
fn ledger_verify_catches_an_hour_that_disagrees_and_a_rebuild_mends_it() {
    on_both(|postgres| async move {
        let m = Market::new(postgres).await;
        let (token, install) = m.install("alpha", "nexus-labs/pii-redactor", NOV_1 + 5 * MINUTE).await;
        m.events(&token, &[NOV_1 + 6 * MINUTE, NOV_1 + HOUR + 1]).await;
        assert_eq!(m.hours(&install).await, [(NOV_1, 1), (NOV_1 + HOUR, 1)]);

        let writer = m.env.market.db.writer();
        sqlx::query("UPDATE usage_hours SET units = units + 4 WHERE install_id = $1 AND hour_start = $2")
            .bind(&install)
            .bind(NOV_1 + HOUR)
            .execute(writer)
            .await
            .unwrap();
        sqlx::query("DELETE FROM usage_hours WHERE install_id = $1 AND hour_start = $2")
            .bind(&install)
            .bind(NOV_1)
            .execute(writer)
            .await
            .unwrap();
        let report = m.verify().await;
        assert_eq!(report["ok"], false, "{report}");
        let check = usage_check(&report);
        assert_eq!(
            check["differences"],
            json!([
                format!(
                    "install {install} meter `payloads-scanned` hour {NOV_1}: the invocations say +1 units against usage_hours"
                ),
                format!(
                    "install {install} meter `payloads-scanned` hour {}: the invocations say -4 units against usage_hours",
                    NOV_1 + HOUR
                ),
            ]),
            "{report}"
        );

        let rebuilt = nexus_marketplace::billing::rollups::rebuild(&m.env.market).await.unwrap();
        assert_eq!(rebuilt.usage_hours, 2);
        assert_eq!(m.hours(&install).await, [(NOV_1, 1), (NOV_1 + HOUR, 1)]);
        assert_eq!(m.verify().await["ok"], true);
    });
}
