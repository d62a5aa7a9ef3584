//! Money end to end through the API: the worked example of `tests/data/worked-example.md`
//! to the cent, failed collections and their retries, timeouts resolved without paying
//! twice, trials, refunds, exactly-once billing across two nodes, and refusals of bad input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::Scripted;
use nexus_marketplace::billing::{BillingConfig, Clock, DAY_MS, ManualClock, SandboxProvider};
use nexus_marketplace::people::{self, Role};
use serde_json::{Value, json};

use super::common::{Env, Options, on_both};

/// 2026-11-01T00:00:00Z and the days after it that the example uses.
const NOV_1: i64 = 1_793_491_200_000;
const NOV_2: i64 = NOV_1 + DAY_MS;
const NOV_10: i64 = NOV_1 + 9 * DAY_MS;
const NOV_15: i64 = NOV_1 + 14 * DAY_MS;
const NOV_20: i64 = NOV_1 + 19 * DAY_MS;
const NOV_25: i64 = NOV_1 + 24 * DAY_MS;
const DEC_1: i64 = NOV_1 + 30 * DAY_MS;

/// A marketplace whose billing clock stands at `start` and whose provider is a sandbox the
/// test scripts.
struct Money {
    env: Env,
    clock: Arc<ManualClock>,
    sandbox: Arc<SandboxProvider>,
}

impl Money {
    async fn new(postgres: bool, start: i64) -> Self {
        let clock = Arc::new(ManualClock::at(start));
        let sandbox = Arc::new(SandboxProvider::default());
        let billing = BillingConfig::sandboxed(clock.clone(), sandbox.clone());
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        Self { env, clock, sandbox }
    }

    async fn plan(&self, plugin: &str, plan: Value) -> Value {
        let (status, body) = self.env.post(&format!("/v1/plugins/{plugin}/plans"), &self.env.publisher, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// `POST /v1/billing/runs` at the clock's time.
    async fn run(&self) -> Value {
        let (status, report) = self.env.post("/v1/billing/runs", &self.env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        report
    }

    async fn charges(&self, tenant: &str) -> Vec<Value> {
        let (status, page) =
            self.env.get(&format!("/v1/charges?tenant={tenant}&per_page=100"), &self.env.operator).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut items = page["items"].as_array().unwrap().clone();
        // Oldest first; charges billed at the same moment by the period they bill.
        items.sort_by_key(|c| {
            (c["created_at"].as_i64(), c["period_start"].as_i64(), c["line"].as_str().map(String::from))
        });
        items
    }

    async fn keyed(&self, method: &str, uri: &str, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, bytes) = self.env.raw(request).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The body of a GET as text (CSV answers).
    async fn text(&self, uri: &str, token: &str) -> String {
        let request =
            Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
        String::from_utf8(self.env.raw(request).await.2).unwrap()
    }

    /// The statuses of a charge's collection attempts, in order.
    async fn attempts(&self, charge: &Value) -> Vec<String> {
        let (_, detail) =
            self.env.get(&format!("/v1/charges/{}", charge["id"].as_str().unwrap()), &self.env.operator).await;
        detail["attempts"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap().to_string()).collect()
    }

    async fn verify(&self) -> Value {
        let (status, report) = self.env.get("/v1/ledger/verify", &self.env.operator).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["ok"], true, "{report}");
        report
    }
}

/// Sends orders `from..=to` to the tenant's tax calculator (one `tax-calculations` unit each).
async fn send_orders(env: &Env, tenant: &str, from: u32, to: u32) {
    for n in from..=to {
        let order = json!({ "order_id": format!("o-{n}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let event = json!({ "id": format!("evt-{n}"), "type": "order.created", "payload": order });
        let (status, receipt) = env.post("/v1/events", tenant, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
    }
}

/// (line, status, amount, currency, fee) of each charge, oldest first.
fn summary(charges: &[Value]) -> Vec<(String, String, i64, String, Option<i64>)> {
    charges
        .iter()
        .map(|c| {
            (
                format!(
                    "{}:{}",
                    c["plugin"].as_str().unwrap().trim_start_matches("nexus-labs/"),
                    c["line"].as_str().unwrap()
                ),
                c["status"].as_str().unwrap().to_string(),
                c["amount_minor"].as_i64().unwrap(),
                c["currency"].as_str().unwrap().to_string(),
                c["fee_minor"].as_i64(),
            )
        })
        .collect()
}

fn row(
    line: &str,
    status: &str,
    amount: i64,
    currency: &str,
    fee: Option<i64>,
) -> (String, String, i64, String, Option<i64>) {
    (line.to_string(), status.to_string(), amount, currency.to_string(), fee)
}

/// The balance of an account in a currency, from the ledger of one charge list's postings.
fn account_total(transactions: &[Value], account: &str, currency: &str) -> i64 {
    transactions
        .iter()
        .flat_map(|t| t["entries"].as_array().unwrap().iter())
        .filter(|e| e["account"] == account && e["currency"] == currency)
        .map(|e| e["amount_minor"].as_i64().unwrap())
        .sum()
}

#[test]
fn the_worked_example_reproduces_to_the_cent() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        m.plan(
            "nexus-labs/echo",
            json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time",
                                          "currency": "EUR", "price_minor": 6000 }),
        )
        .await;
        m.plan(
            "nexus-labs/tax-calculator",
            json!({ "key": "metered", "name": "Metered", "model": "usage",
            "currency": "EUR", "usage": { "meter": "tax-calculations", "unit_minor": 25, "included_units": 10,
                                          "cap_minor": 300 } }),
        )
        .await;
        let team = m
            .plan(
                "nexus-labs/pii-redactor",
                json!({ "key": "team", "name": "Team", "model": "subscription",
                "currency": "USD", "price_minor": 2900, "interval": "month", "trial_days": 14 }),
            )
            .await;
        assert_eq!(team["revision"], 2, "the manifest seeded revision 1: {team}");
        m.plan(
            "nexus-labs/pii-redactor",
            json!({ "key": "business", "name": "Business", "model": "subscription",
            "currency": "USD", "price_minor": 5900, "interval": "month" }),
        )
        .await;
        let policy =
            json!({ "publisher": "nexus-labs", "tiers": [{ "up_to": 100, "rate_bp": 0 }, { "rate_bp": 2000 }] });
        let (status, body) = env.post("/v1/revenue-share/policies", &env.operator, policy).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // Nov 1.
        let acme = env.tenant("acme").await;
        let globex = env.tenant("globex").await;
        env.install(&acme, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        let tax = env
            .install(&acme, "nexus-labs/tax-calculator", json!({ "plan": "metered", "config": { "rates": "DE=1900" } }))
            .await;
        let pii = env.install(&globex, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        assert_eq!(pii["trial_ends_at"], NOV_15, "{pii}");
        m.sandbox.script(&"globex".parse().unwrap(), [Scripted::Refuse("card_declined".into())]);
        env.install(&globex, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        assert_eq!(summary(&m.charges("acme").await), [row("echo:one-time", "collected", 6000, "EUR", Some(0))]);
        let globex_charges = m.charges("globex").await;
        assert_eq!(summary(&globex_charges), [row("echo:one-time", "failed", 6000, "EUR", None)]);
        assert_eq!(globex_charges[0]["next_attempt_at"], NOV_2);
        let c2 = globex_charges[0]["id"].as_str().unwrap().to_string();

        // Nov 2: the retry succeeds and crosses the 100.00 boundary.
        m.clock.set(NOV_2);
        let report = m.run().await;
        assert_eq!((report["charges_created"].as_i64(), report["collected"].as_i64()), (Some(0), Some(1)), "{report}");
        let (_, detail) = env.get(&format!("/v1/charges/{c2}"), &globex).await;
        assert_eq!(detail["charge"]["fee_minor"], 400, "{detail}");
        let attempts: Vec<&str> =
            detail["attempts"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap()).collect();
        assert_eq!(attempts, ["declined", "succeeded"]);

        // Nov 10: 30 orders.
        m.clock.set(NOV_10);
        send_orders(env, &acme, 1, 30).await;

        // Nov 15: the trial ends, the first period is charged in advance.
        m.clock.set(NOV_15);
        let report = m.run().await;
        assert_eq!(report["charged"], json!({ "USD": 2900 }), "{report}");

        // Nov 20: the upgrade, prorated.
        m.clock.set(NOV_20);
        let pii_id = pii["id"].as_str().unwrap();
        // The preview says what the change then does, to the cent, and writes nothing.
        let uri = format!("/v1/installs/{pii_id}/plan/preview?plan=business");
        let (status, preview) = env.get(&uri, &globex).await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert_eq!(
            (&preview["currency"], &preview["credited_minor"], &preview["charged_minor"]),
            (&json!("USD"), &json!(2417), &json!(4917)),
            "{preview}"
        );
        let lines: Vec<(&str, i64)> = preview["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["line"].as_str().unwrap(), l["amount_minor"].as_i64().unwrap()))
            .collect();
        assert_eq!(lines, [("proration-credit", -2417), ("proration", 4917)]);
        assert_eq!(env.get(&uri, &globex).await.1, preview, "a preview changes nothing");
        let (status, same) = env.get(&format!("/v1/installs/{pii_id}/plan/preview?plan=team"), &globex).await;
        assert_eq!((status, &same["error"]["code"]), (StatusCode::CONFLICT, &json!("same_plan")), "{same}");
        let change = json!({ "plan": "business" });
        let (status, moved) =
            m.keyed("PUT", &format!("/v1/installs/{pii_id}/plan"), &globex, "move-1", change.clone()).await;
        assert_eq!((status, moved["plan"].as_str()), (StatusCode::OK, Some("business")), "{moved}");
        // The same change retried under its key changes nothing more.
        let (status, again) = m.keyed("PUT", &format!("/v1/installs/{pii_id}/plan"), &globex, "move-1", change).await;
        assert_eq!((status, again["plan"].as_str()), (StatusCode::OK, Some("business")), "{again}");

        // Nov 25: a partial refund of C2, retried once under its key.
        m.clock.set(NOV_25);
        let refund = json!({ "amount_minor": 1500, "reason": "goodwill" });
        let (status, r1) =
            m.keyed("POST", &format!("/v1/charges/{c2}/refunds"), &env.operator, "refund-1", refund.clone()).await;
        assert_eq!((status, r1["fee_minor"].as_i64()), (StatusCode::CREATED, Some(100)), "{r1}");
        let (status, replay) =
            m.keyed("POST", &format!("/v1/charges/{c2}/refunds"), &env.operator, "refund-1", refund).await;
        assert_eq!((status, &replay["id"]), (StatusCode::CREATED, &r1["id"]), "{replay}");

        // Before the period ends, the usage so far is rated as the run will rate it.
        let (status, so_far) = env.get(&format!("/v1/installs/{}/usage", tax["id"].as_str().unwrap()), &acme).await;
        assert_eq!(status, StatusCode::OK, "{so_far}");
        assert_eq!(
            (&so_far["units"], &so_far["included_units"], &so_far["billable_units"], &so_far["estimate_minor"]),
            (&json!(30), &json!(10), &json!(20), &json!(300)),
            "capped at 3.00 as the bill will be: {so_far}"
        );
        assert_eq!((&so_far["period_end"], &so_far["next_charge_at"]), (&json!(DEC_1), &json!(DEC_1)), "{so_far}");

        // Dec 1: usage in arrears, capped; then the same run again changes nothing.
        m.clock.set(DEC_1);
        let report = m.run().await;
        assert_eq!(
            (report["charged"].clone(), report["collected"].as_i64()),
            (json!({ "EUR": 300 }), Some(1)),
            "{report}"
        );
        let report = m.run().await;
        assert_eq!((report["charges_created"].as_i64(), report["collected"].as_i64()), (Some(0), Some(0)), "{report}");

        assert_eq!(
            summary(&m.charges("acme").await),
            [
                row("echo:one-time", "collected", 6000, "EUR", Some(0)),
                row("tax-calculator:usage:tax-calculations", "collected", 300, "EUR", Some(60))
            ]
        );
        assert_eq!(
            summary(&m.charges("globex").await),
            [
                row("echo:one-time", "collected", 6000, "EUR", Some(400)),
                row("pii-redactor:subscription", "collected", 2900, "USD", Some(0)),
                row("pii-redactor:proration", "collected", 4917, "USD", Some(0))
            ]
        );
        let usage = m.charges("acme").await[1].clone();
        assert_eq!(
            (
                &usage["detail"]["units_reported"],
                &usage["detail"]["units_included"],
                &usage["detail"]["units_billable"],
                &usage["detail"]["unit_minor"],
                &usage["detail"]["cap_applied_minor"]
            ),
            (&json!(30), &json!(10), &json!(20), &json!(25), &json!(300)),
            "{usage}"
        );
        assert_eq!((usage["period_start"].as_i64(), usage["period_end"].as_i64()), (Some(NOV_1), Some(DEC_1)));
        let (_, behind) =
            env.get(&format!("/v1/charges/{}/invocations?per_page=100", usage["id"].as_str().unwrap()), &acme).await;
        assert_eq!(behind["total"], 30, "{behind}");
        let uri = format!("/v1/charges/{}/invocations?per_page=100", usage["id"].as_str().unwrap());
        let (_, traced) = env.get(&uri, &env.publisher).await;
        assert_eq!(traced["items"], behind["items"], "the partner traces its usage line to the same invocations");
        assert!(tax["id"].is_string());

        // Bills.
        let (_, bill) = env.get("/v1/bills/2026-11", &acme).await;
        assert_eq!(
            bill["totals"],
            json!([{ "currency": "EUR", "charged_minor": 6000, "collected_minor": 6000,
                                            "outstanding_minor": 0, "refunded_minor": 0 }]),
            "{bill}"
        );
        let (_, bill) = env.get("/v1/bills/2026-12", &acme).await;
        assert_eq!(bill["totals"][0]["charged_minor"], 300, "{bill}");
        let (_, bill) = env.get("/v1/bills/2026-11", &globex).await;
        assert_eq!(
            bill["totals"],
            json!([
                { "currency": "EUR", "charged_minor": 6000, "collected_minor": 6000, "outstanding_minor": 0, "refunded_minor": 1500 },
                { "currency": "USD", "charged_minor": 7817, "collected_minor": 7817, "outstanding_minor": 0, "refunded_minor": 2417 },
            ]),
            "{bill}"
        );
        let kinds: Vec<(&str, i64)> = bill["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["kind"].as_str().unwrap(), r["amount_minor"].as_i64().unwrap()))
            .collect();
        assert_eq!(kinds, [("proration-credit", 2417), ("refund", 1500)]);

        // The partner's sales and balance.
        let (_, sales) = env.get("/v1/publishers/nexus-labs/sales", &env.publisher).await;
        let rows: Vec<(&str, &str, i64, i64, i64, i64, i64)> = sales["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["plugin"].as_str().unwrap(),
                    r["plan"].as_str().unwrap(),
                    r["gross_minor"].as_i64().unwrap(),
                    r["fee_minor"].as_i64().unwrap(),
                    r["share_minor"].as_i64().unwrap(),
                    r["refunded_minor"].as_i64().unwrap(),
                    r["fee_refunded_minor"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("nexus-labs/echo", "lifetime", 12000, 400, 11600, 1500, 100),
                ("nexus-labs/pii-redactor", "business", 4917, 0, 4917, 0, 0),
                ("nexus-labs/pii-redactor", "team", 2900, 0, 2900, 2417, 0),
                ("nexus-labs/tax-calculator", "metered", 300, 60, 240, 0, 0),
            ]
        );
        assert_eq!(
            sales["balances"],
            json!([{ "currency": "EUR", "payable_minor": 10440 },
                                             { "currency": "USD", "payable_minor": 5400 }])
        );

        // The ledger, account by account.
        let mut transactions = Vec::new();
        for tenant in ["acme", "globex"] {
            for charge in m.charges(tenant).await {
                let (_, detail) =
                    env.get(&format!("/v1/charges/{}", charge["id"].as_str().unwrap()), &env.operator).await;
                transactions.extend(detail["ledger"].as_array().unwrap().iter().cloned());
            }
        }
        let balances: Vec<i64> = [
            ("platform:cash", "EUR"),
            ("platform:cash", "USD"),
            ("platform:fee-revenue", "EUR"),
            ("platform:fee-revenue", "USD"),
            ("partner:nexus-labs:payable", "EUR"),
            ("partner:nexus-labs:payable", "USD"),
            ("tenant:acme:receivable", "EUR"),
            ("tenant:globex:receivable", "EUR"),
            ("tenant:globex:receivable", "USD"),
        ]
        .iter()
        .map(|(account, currency)| account_total(&transactions, account, currency))
        .collect();
        assert_eq!(balances, [10800, 5400, -360, 0, -10440, -5400, 0, 0, 0]);
        let report = m.verify().await;
        assert_eq!(report["transactions"], 12, "5 charges billed, 5 collected, 2 refunds: {report}");
        // The sandbox was asked to collect 6 times and took money 5 times.
        assert_eq!(m.sandbox.collected().len(), 5);
        assert_eq!(m.sandbox.calls(), 6);

        // Statements for November, from the ledger, closed; the same bytes when rebuilt.
        let (_, nov) = env.get("/v1/publishers/nexus-labs/statements/2026-11", &env.publisher).await;
        let eur = &nov[0];
        assert_eq!(
            (
                eur["currency"].as_str(),
                eur["closed"].as_bool(),
                eur["opening_minor"].as_i64(),
                eur["sales_minor"].as_i64(),
                eur["fees_minor"].as_i64(),
                eur["refunds_minor"].as_i64(),
                eur["fees_returned_minor"].as_i64(),
                eur["closing_minor"].as_i64()
            ),
            (Some("EUR"), Some(true), Some(0), Some(12000), Some(400), Some(1500), Some(100), Some(10200)),
            "{nov}"
        );
        let kinds: Vec<(&str, i64)> = eur["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["kind"].as_str().unwrap(), l["amount_minor"].as_i64().unwrap()))
            .collect();
        assert_eq!(kinds, [("collection", 6000), ("collection", 5600), ("refund", -1400)]);
        let usd = &nov[1];
        assert_eq!(
            (usd["sales_minor"].as_i64(), usd["refunds_minor"].as_i64(), usd["closing_minor"].as_i64()),
            (Some(7817), Some(2417), Some(5400)),
            "{nov}"
        );
        let uri = "/v1/publishers/nexus-labs/statements/2026-11.csv";
        let csv = m.text(uri, &env.publisher).await;
        assert_eq!(csv, m.text(uri, &env.publisher).await, "rebuilt byte for byte");
        assert!(csv.lines().nth(1).unwrap().starts_with("EUR,2026-11,opening,"), "{csv}");
        assert!(
            csv.contains(",refund,")
                && csv.lines().any(|l| l.starts_with("USD,2026-11,closing,") && l.ends_with(",5400")),
            "{csv}"
        );

        // A second partner with one small sale in December: under the 25.00 minimum.
        let acme_tools =
            env.market.registry.create_publisher(&"acme-tools".parse().unwrap(), "Acme Tools", "test").await.unwrap();
        let credential = env.market.registry.authenticate(&acme_tools.secret).await.unwrap();
        let relay =
            super::common::manifest_of("echo").replacen("id = \"nexus-labs/echo\"", "id = \"acme-tools/relay\"", 1);
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let request =
            nexus_registry::PublishRequest { manifest: relay, component, claimed_digest: None, signature: None };
        env.market.publish(&credential, request).await.unwrap();
        let (status, body) = env
            .post(
                "/v1/plugins/acme-tools/relay/plans",
                &acme_tools.secret,
                json!({
            "key": "once", "name": "Once", "model": "one-time", "currency": "EUR", "price_minor": 1000 }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        env.install(&acme, "acme-tools/relay", json!({ "plan": "once" })).await;

        // The payout run of December's first half: who is paid what, who is carried.
        let (status, payout_run) = env.post("/v1/payouts/runs", &env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{payout_run}");
        assert_eq!(
            (&payout_run["period"], &payout_run["paid"], &payout_run["paid_minor"], &payout_run["carried_forward"]),
            (
                &json!("2026-12-1"),
                &json!(2),
                &json!({ "EUR": 10440, "USD": 5400 }),
                &json!([{ "publisher": "acme-tools", "currency": "EUR", "balance_minor": 1000, "minimum_minor": 2500 }])
            ),
            "{payout_run}"
        );
        let (status, again) = env.post("/v1/payouts/runs", &env.operator, json!({})).await;
        assert_eq!((status, &again["paid"], &again["paid_minor"]), (StatusCode::OK, &json!(0), &json!({})), "{again}");
        assert_eq!(m.sandbox.paid().len(), 2, "each partner and currency paid once");

        // Each payout lists what it settles: opening + sales − fees − refunds + fees back = paid.
        let (_, paid) = env.get("/v1/publishers/nexus-labs/payouts", &env.publisher).await;
        let eur_payout = paid.as_array().unwrap().iter().find(|p| p["currency"] == "EUR").unwrap();
        assert_eq!((eur_payout["status"].as_str(), eur_payout["amount_minor"].as_i64()), (Some("paid"), Some(10440)));
        let (_, detail) = env
            .get(&format!("/v1/publishers/nexus-labs/payouts/{}", eur_payout["id"].as_str().unwrap()), &env.publisher)
            .await;
        assert_eq!(
            detail["reconciliation"],
            json!({ "opening_minor": 0, "sales_minor": 12300, "fees_minor": 460,
            "refunds_minor": 1500, "fees_returned_minor": 100, "adjustments_minor": 0, "payouts_minor": 0,
            "closing_minor": 10440 }),
            "{detail}"
        );
        assert_eq!(detail["lines"].as_array().unwrap().len(), 4, "C1, C2, R1 and C5: {detail}");
        let (_, dec) = env.get("/v1/publishers/nexus-labs/statements/2026-12?currency=EUR", &env.publisher).await;
        assert_eq!(
            (
                dec[0]["opening_minor"].as_i64(),
                dec[0]["sales_minor"].as_i64(),
                dec[0]["payouts_minor"].as_i64(),
                dec[0]["closing_minor"].as_i64(),
                dec[0]["closed"].as_bool()
            ),
            (Some(10200), Some(300), Some(10440), Some(0), Some(false)),
            "{dec}"
        );

        // GMV, from the same ledger: the dashboard, the CSV, the statements and /metrics agree.
        let (_, figures) =
            env.get(&format!("/v1/metrics/gmv?interval=month&from={NOV_1}&to={}", DEC_1 + DAY_MS), &env.operator).await;
        let rows: Vec<(&str, &str, i64, i64, i64, i64)> = figures["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["period"].as_str().unwrap(),
                    r["currency"].as_str().unwrap(),
                    r["gmv_minor"].as_i64().unwrap(),
                    r["refunds_minor"].as_i64().unwrap(),
                    r["net_revenue_minor"].as_i64().unwrap(),
                    r["take_rate_bp"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-11-01", "EUR", 12000, 1500, 300, 250),
                ("2026-11-01", "USD", 7817, 2417, 0, 0),
                ("2026-12-01", "EUR", 1300, 0, 60, 462),
            ]
        );
        let (_, by_partner) =
            env.get(&format!("/v1/metrics/gmv?by=partner&from={DEC_1}&to={}", DEC_1 + DAY_MS), &env.operator).await;
        let partners: Vec<(&str, i64)> = by_partner["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["group"].as_str().unwrap(), r["gmv_minor"].as_i64().unwrap()))
            .collect();
        assert_eq!(partners, [("acme-tools", 1000), ("nexus-labs", 300)]);
        let (_, own) = env
            .get(&format!("/v1/metrics/gmv?by=partner&from={DEC_1}&to={}", DEC_1 + DAY_MS), &acme_tools.secret)
            .await;
        assert_eq!(own["rows"].as_array().unwrap().len(), 1, "a partner sees its own: {own}");
        let uri = format!("/v1/metrics/gmv?interval=month&from={NOV_1}&to={}&format=csv", DEC_1 + DAY_MS);
        let csv = m.text(&uri, &env.operator).await;
        assert!(csv.lines().any(|l| l.starts_with("2026-11-01,") && l.contains(",EUR,,12000,1500,300,250,")), "{csv}");
        let mut statement_sales = 0;
        for (publisher, period) in [("nexus-labs", "2026-11"), ("nexus-labs", "2026-12"), ("acme-tools", "2026-12")] {
            let uri = format!("/v1/publishers/{publisher}/statements/{period}?currency=EUR");
            statement_sales += env.get(&uri, &env.operator).await.1[0]["sales_minor"].as_i64().unwrap();
        }
        assert_eq!(statement_sales, 12000 + 1300);
        let (_, metrics, text) = env.raw(Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert!(metrics.get(header::CONTENT_TYPE).is_some());
        let text = String::from_utf8(text).unwrap();
        for line in [
            "nexus_gmv_minor{currency=\"EUR\"} 13300",
            "nexus_gmv_minor{currency=\"USD\"} 7817",
            "nexus_payouts_paid_minor{currency=\"EUR\"} 10440",
            "nexus_payouts_paid_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in /metrics");
        }
        let (_, ecosystem) =
            env.get(&format!("/v1/metrics/ecosystem?from={DEC_1}&to={}", DEC_1 + DAY_MS), &env.operator).await;
        let december = &ecosystem[0];
        assert_eq!(
            (&december["paying_tenants"], &december["installs"], &december["active_partners"], &december["gmv"]),
            (&json!(1), &json!(1), &json!(2), &json!([{ "currency": "EUR", "gmv_minor": 1300, "growth_bp": -8917 }])),
            "{ecosystem}"
        );
        assert_eq!(december["top_partners"][0], json!({ "currency": "EUR", "id": "acme-tools", "gmv_minor": 1000 }));
        m.verify().await;
    });
}

/// The echo plan everyone buys in the tests below: 60.00 EUR once.
async fn lifetime_echo(m: &Money) {
    m.plan(
        "nexus-labs/echo",
        json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time",
                                      "currency": "EUR", "price_minor": 6000 }),
    )
    .await;
}

#[test]
fn exhausted_retries_pause_the_install_until_its_tenant_settles() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        lifetime_echo(&m).await;
        let tenant = env.tenant("initech").await;
        let declined = || Scripted::Refuse("insufficient_funds".into());
        m.sandbox.script(&"initech".parse().unwrap(), [declined(), declined(), declined(), declined()]);
        let install = env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        let id = install["id"].as_str().unwrap();
        // Attempt 1 at install; retries after 1, 3 and 5 more days.
        for (day, expected_next) in [(1, Some(NOV_1 + 4 * DAY_MS)), (4, Some(NOV_1 + 9 * DAY_MS)), (9, None)] {
            m.clock.set(NOV_1 + day * DAY_MS);
            let report = m.run().await;
            assert_eq!(report["declined"], 1, "day {day}: {report}");
            let charge = &m.charges("initech").await[0];
            assert_eq!(
                (charge["status"].as_str(), charge["next_attempt_at"].as_i64()),
                (Some("failed"), expected_next)
            );
        }
        let (_, shown) = env.get(&format!("/v1/installs/{id}"), &tenant).await;
        assert_eq!((&shown["status"], &shown["paused_for"]), (&json!("paused"), &json!("payment")), "{shown}");
        assert!(shown["status_reason"].as_str().unwrap().starts_with("payment_failed: "), "{shown}");
        // A paused install gets no events, and plain resume is refused until it is paid.
        let (_, receipt) = env.post("/v1/events", &tenant, json!({ "type": "ping", "payload": {} })).await;
        assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(0), "{receipt}");
        let (status, body) = env.post(&format!("/v1/installs/{id}/resume"), &tenant, json!({})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("payment_outstanding")));
        // Nothing more is tried on schedule, and the tenant settles.
        m.clock.set(NOV_1 + 20 * DAY_MS);
        assert_eq!(m.run().await["declined"], 0);
        let (status, settled) = env.post(&format!("/v1/installs/{id}/settle"), &tenant, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{settled}");
        assert_eq!(
            (settled["status"].as_str(), settled["outstanding"].as_array().map(Vec::len)),
            (Some("active"), Some(0))
        );
        let (_, shown) = env.get(&format!("/v1/installs/{id}"), &tenant).await;
        assert_eq!((&shown["status"], shown.get("paused_for")), (&json!("active"), None), "{shown}");
        let charge = &m.charges("initech").await[0];
        assert_eq!((charge["status"].as_str(), charge["attempts"].as_i64()), (Some("collected"), Some(5)));
        assert_eq!(m.attempts(charge).await, ["declined", "declined", "declined", "declined", "succeeded"]);
        assert_eq!(m.sandbox.collected().len(), 1);
        m.verify().await;
    });
}

/// The tenant's cache generation, which every node's event path checks its cached installs
/// and tokens against (migration 0013).
async fn generation(m: &Money, tenant: &str) -> i64 {
    sqlx::query_scalar("SELECT generation FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(m.env.market.db.writer())
        .await
        .unwrap()
}

/// A billing run moves only an install's billing columns, which no node caches: the tenant's
/// generation stays, and so do the caches. The pause that ends a failed collection changes
/// what the install receives: the generation moves once, and the next event reads afresh.
#[test]
fn a_billing_run_keeps_the_event_caches_and_a_payment_pause_renews_them() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        m.plan(
            "nexus-labs/pii-redactor",
            json!({ "key": "team", "name": "Team", "model": "subscription",
                    "currency": "USD", "price_minor": 2900, "interval": "month" }),
        )
        .await;
        let tenant = env.tenant("globex").await;
        env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        let installed = generation(&m, "globex").await;
        let declined = || Scripted::Refuse("insufficient_funds".into());
        m.sandbox.script(&"globex".parse().unwrap(), [declined(), declined(), declined(), declined()]);
        // December is billed and declined, then retried after 1 and 3 more days.
        for (at, created) in [(DEC_1, 1), (DEC_1 + DAY_MS, 0), (DEC_1 + 4 * DAY_MS, 0)] {
            m.clock.set(at);
            let report = m.run().await;
            assert_eq!((report["charges_created"].as_i64(), report["declined"].as_i64()), (Some(created), Some(1)));
            assert_eq!(generation(&m, "globex").await, installed, "{report}");
        }
        // The last retry fails: the install pauses, and that is what events must see.
        m.clock.set(DEC_1 + 9 * DAY_MS);
        assert_eq!(m.run().await["declined"], 1);
        assert_eq!(generation(&m, "globex").await, installed + 1);
        let (_, receipt) = env.post("/v1/events", &tenant, json!({ "type": "ping", "payload": {} })).await;
        assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(0), "{receipt}");
    });
}

/// Each column the event path caches of an install (`installs/delivery.rs`, `TARGET_COLUMNS`,
/// and the digest its component loads by) moves its tenant's generation by exactly one when it
/// changes, and the columns it does not cache move nothing: the trigger of migration 0038
/// names the same columns, on both backends. A column added to one list and not the other
/// fails here.
#[test]
fn each_cached_install_column_renews_the_caches_once_and_no_other_column_does() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        let tenant = env.tenant("globex").await;
        env.tenant("initech").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        let id = install["id"].as_str().unwrap().to_string();
        let changes: [(&str, &str, i64); 17] = [
            ("version", "version || '-x'", 1),
            ("digest", "digest || 'x'", 1),
            ("event_types", "event_types || ' '", 1),
            ("grants", "grants || ' '", 1),
            ("config", "config || ' '", 1),
            ("secrets_sealed", "COALESCE(secrets_sealed, '') || 'x'", 1),
            ("status", "'paused'", 1),
            ("status_reason", "COALESCE(status_reason, '') || 'x'", 1),
            ("consecutive_failures", "consecutive_failures + 1", 1),
            ("ordered_delivery", "1 - ordered_delivery", 1),
            ("plugin_id", "'nexus-labs/pii-redactor'", 1),
            ("requirement", "requirement || ' '", 0),
            ("pending_reason", "COALESCE(pending_reason, '') || 'x'", 0),
            ("updated_at", "updated_at + 1", 0),
            ("paid_through", "COALESCE(paid_through, 0) + 1", 0),
            ("usage_billed_until", "COALESCE(usage_billed_until, 0) + 1", 0),
            ("next_bill_at", "COALESCE(next_bill_at, 0) + 1", 0),
        ];
        for (column, value, moves) in changes {
            let before = generation(&m, "globex").await;
            sqlx::query(&format!("UPDATE installs SET {column} = {value} WHERE id = $1"))
                .bind(&id)
                .execute(m.env.market.db.writer())
                .await
                .unwrap();
            assert_eq!(generation(&m, "globex").await, before + moves, "{column}");
        }
        // Moving the install to another tenant renews both tenants' caches, once each.
        let (globex, initech) = (generation(&m, "globex").await, generation(&m, "initech").await);
        sqlx::query("UPDATE installs SET tenant_id = 'initech' WHERE id = $1")
            .bind(&id)
            .execute(m.env.market.db.writer())
            .await
            .unwrap();
        assert_eq!((generation(&m, "globex").await, generation(&m, "initech").await), (globex + 1, initech + 1));
    });
}

/// Tenant `acme` with tax-calculator installed on a usage plan of 0.10 EUR per calculation:
/// its token and the install.
async fn metered_tax_install(m: &Money) -> (String, Value) {
    m.plan(
        "nexus-labs/tax-calculator",
        json!({ "key": "metered", "name": "Metered", "model": "usage",
        "currency": "EUR", "usage": { "meter": "tax-calculations", "unit_minor": 10 } }),
    )
    .await;
    let tenant = m.env.tenant("acme").await;
    let config = json!({ "plan": "metered", "config": { "rates": "DE=1900" } });
    let install = m.env.install(&tenant, "nexus-labs/tax-calculator", config).await;
    (tenant, install)
}

/// Eight uninstalls of one usage-plan install at once, while a billing run goes: one of them
/// uninstalls, the others find it gone, and the usage so far is billed exactly once.
#[test]
fn concurrent_uninstalls_of_a_usage_install_bill_its_usage_once() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        let (tenant, install) = metered_tax_install(&m).await;
        m.clock.set(NOV_10);
        send_orders(env, &tenant, 1, 7).await;
        m.clock.set(NOV_15);
        let uri = format!("/v1/installs/{}", install["id"].as_str().unwrap());
        let uninstalls = futures_util::future::join_all((0..8).map(|_| env.call("DELETE", &uri, Some(&tenant), None)));
        let (answers, _) = tokio::join!(uninstalls, m.run());
        let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| status.as_u16()).collect();
        statuses.sort_unstable();
        assert_eq!(statuses[0], 200, "{answers:?}");
        assert!(statuses[1..].iter().all(|s| *s == 404), "one uninstall, the rest find none: {answers:?}");
        m.clock.set(NOV_20);
        m.run().await;
        m.clock.set(DEC_1 + 60 * DAY_MS);
        assert_eq!(m.run().await["charges_created"], 0);
        let charges = m.charges("acme").await;
        assert_eq!(summary(&charges), [row("tax-calculator:usage:tax-calculations", "collected", 70, "EUR", Some(0))]);
        m.verify().await;
    });
}

#[test]
fn a_timed_out_collection_is_resolved_by_asking_never_by_collecting_again() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        lifetime_echo(&m).await;
        let (a, b) = (env.tenant("tenant-a").await, env.tenant("tenant-b").await);
        // a: the provider took the money but the answer was lost; b: it never got the request.
        m.sandbox.script(&"tenant-a".parse().unwrap(), [Scripted::TimeOutAfter]);
        m.sandbox.script(&"tenant-b".parse().unwrap(), [Scripted::TimeOutBefore]);
        env.install(&a, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        env.install(&b, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        for tenant in ["tenant-a", "tenant-b"] {
            assert_eq!(m.charges(tenant).await[0]["status"], "collecting", "{tenant}: the outcome is not known");
        }
        // a's outcome is asked for and found; b's attempt never happened, so b is collected
        // under a new attempt by the same run.
        let report = m.run().await;
        assert_eq!((report["collected"].as_i64(), report["unknown"].as_i64()), (Some(2), Some(0)), "{report}");
        let report = m.run().await;
        assert_eq!((report["collected"].as_i64(), report["unknown"].as_i64()), (Some(0), Some(0)), "{report}");
        assert_eq!(m.attempts(&m.charges("tenant-a").await[0]).await, ["succeeded"]);
        assert_eq!(m.attempts(&m.charges("tenant-b").await[0]).await, ["abandoned", "succeeded"]);
        // Each tenant paid once.
        let mut paid: Vec<String> = m.sandbox.collected().into_iter().map(|(_, tenant, _)| tenant).collect();
        paid.sort();
        assert_eq!(paid, ["tenant-a", "tenant-b"]);
        m.verify().await;
    });
}

#[test]
fn trials_charge_nothing_and_are_not_restarted_by_reinstalling() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        m.plan(
            "nexus-labs/pii-redactor",
            json!({ "key": "team", "name": "Team", "model": "subscription",
            "currency": "USD", "price_minor": 2900, "interval": "month", "trial_days": 14 }),
        )
        .await;
        let tenant = env.tenant("globex").await;
        let first = env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        assert_eq!(first["trial_ends_at"], NOV_15);
        // Uninstalled within the trial: nothing is ever charged for it.
        m.clock.set(NOV_10);
        let (status, _) =
            env.call("DELETE", &format!("/v1/installs/{}", first["id"].as_str().unwrap()), Some(&tenant), None).await;
        assert_eq!(status, StatusCode::OK);
        m.clock.set(DEC_1);
        m.run().await;
        assert_eq!(m.charges("globex").await.len(), 0);
        // Reinstalled within the trial: the rest of the same trial, not a new one.
        m.clock.set(NOV_10 + DAY_MS);
        let again = env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        assert_eq!(again["trial_ends_at"], NOV_15, "{again}");
        m.clock.set(DEC_1);
        m.run().await;
        let charges = m.charges("globex").await;
        assert_eq!(summary(&charges), [row("pii-redactor:subscription", "collected", 2900, "USD", Some(0))]);
        assert_eq!(
            (charges[0]["period_start"].as_i64(), charges[0]["period_end"].as_i64()),
            (Some(NOV_15), Some(NOV_15 + 30 * DAY_MS))
        );
        let (status, _) =
            env.call("DELETE", &format!("/v1/installs/{}", again["id"].as_str().unwrap()), Some(&tenant), None).await;
        assert_eq!(status, StatusCode::OK);
        // After the trial ended, a reinstall pays at once.
        let third = env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        assert_eq!(third["trial_ends_at"], Value::Null);
        let charges = m.charges("globex").await;
        assert_eq!(charges.len(), 2);
        assert_eq!(
            (charges[1]["period_start"].as_i64(), charges[1]["status"].as_str()),
            (Some(DEC_1), Some("collected"))
        );
        m.verify().await;
    });
}

#[test]
fn a_price_change_is_a_new_revision_that_existing_installs_do_not_pay() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        let old = m
            .plan(
                "nexus-labs/pii-redactor",
                json!({ "key": "team", "name": "Team", "model": "subscription",
            "currency": "USD", "price_minor": 2900, "interval": "month" }),
            )
            .await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
        assert_eq!(install["plan_id"], old["id"]);
        let new = m
            .plan(
                "nexus-labs/pii-redactor",
                json!({ "key": "team", "name": "Team", "model": "subscription",
            "currency": "USD", "price_minor": 3900, "interval": "month" }),
            )
            .await;
        assert_eq!(new["revision"].as_i64(), old["revision"].as_i64().map(|r| r + 1));
        let (_, offered) = env.call("GET", "/v1/plugins/nexus-labs/pii-redactor/plans", None, None).await;
        assert!(offered.as_array().unwrap().iter().any(|p| p["id"] == new["id"]), "{offered}");
        assert!(!offered.as_array().unwrap().iter().any(|p| p["id"] == old["id"]), "{offered}");
        m.clock.set(DEC_1);
        m.run().await;
        let amounts: Vec<i64> = m.charges("globex").await.iter().map(|c| c["amount_minor"].as_i64().unwrap()).collect();
        assert_eq!(amounts, [2900, 2900], "November and December at the price agreed");
        // The tenant moves to the new revision by consenting to it (a plan change).
        let (status, moved) = m
            .keyed(
                "PUT",
                &format!("/v1/installs/{}/plan", install["id"].as_str().unwrap()),
                &tenant,
                "to-new",
                json!({ "plan": new["id"] }),
            )
            .await;
        assert_eq!((status, &moved["plan_id"]), (StatusCode::OK, &new["id"]), "{moved}");
        m.verify().await;
    });
}

/// How many ledger transactions and charges exist: a refused request changes neither.
async fn written(m: &Money) -> (i64, i64) {
    let pool = &m.env.market.db.pool;
    let transactions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions").fetch_one(pool).await.unwrap();
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges").fetch_one(pool).await.unwrap();
    (transactions, charges)
}

#[test]
fn bad_money_input_is_refused_with_a_stable_code_and_nothing_written() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        lifetime_echo(&m).await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        let install = install["id"].as_str().unwrap().to_string();
        let charge = m.charges("globex").await[0]["id"].as_str().unwrap().to_string();
        let before = written(&m).await;
        let plans = "/v1/plugins/nexus-labs/echo/plans";
        let plan = |extra: Value| {
            let mut body =
                json!({ "key": "p", "name": "P", "model": "one-time", "currency": "EUR", "price_minor": 100 });
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body.to_string()
        };
        // (method, uri, idempotency key, body, who calls, status, code)
        type Case<'a> = (&'a str, String, Option<&'a str>, String, &'a str, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("POST", plans.into(), None, plan(json!({ "price_minor": 12.5 })), "publisher", 422, "invalid_json_fields"),
            ("POST", plans.into(), None, plan(json!({ "price_minor": -100 })), "publisher", 400, "invalid_amount"),
            ("POST", plans.into(), None, plan(json!({ "price_minor": 1_000_000_000_001i64 })), "publisher", 400, "invalid_amount"),
            ("POST", plans.into(), None, plan(json!({ "price_minor": 0 })), "publisher", 400, "invalid_plan"),
            ("POST", plans.into(), None, plan(json!({ "currency": "XTS" })), "publisher", 400, "unknown_currency"),
            ("POST", plans.into(), None, plan(json!({ "currency": "eur" })), "publisher", 400, "unknown_currency"),
            ("POST", plans.into(), None, plan(json!({ "model": "subscription" })), "publisher", 400, "invalid_plan"),
            ("POST", plans.into(), None, plan(json!({ "model": "usage", "price_minor": 0, "usage": { "meter": "m", "unit_minor": 1, "cap_minor": -1 } })), "publisher", 400, "invalid_amount"),
            ("POST", plans.into(), None, plan(json!({ "trial_days": 400 })), "publisher", 400, "invalid_plan"),
            ("POST", format!("/v1/charges/{charge}/refunds"), Some("r-1"), json!({ "amount_minor": 6001, "reason": "x" }).to_string(), "operator", 400, "refund_exceeds_charge"),
            ("POST", format!("/v1/charges/{charge}/refunds"), Some("r-2"), json!({ "amount_minor": 0, "reason": "x" }).to_string(), "operator", 400, "invalid_amount"),
            ("POST", format!("/v1/charges/{charge}/refunds"), Some("r-3"), json!({ "amount_minor": 1.5, "reason": "x" }).to_string(), "operator", 422, "invalid_json_fields"),
            ("POST", format!("/v1/charges/{charge}/refunds"), None, json!({ "amount_minor": 100, "reason": "x" }).to_string(), "operator", 400, "idempotency_key_required"),
            ("POST", "/v1/charges/chg_0000000000000000/refunds".into(), Some("r-4"), json!({ "amount_minor": 1, "reason": "x" }).to_string(), "operator", 404, "not_found"),
            ("POST", "/v1/charges/not-a-charge/refunds".into(), Some("r-5"), json!({ "amount_minor": 1, "reason": "x" }).to_string(), "operator", 404, "not_found"),
            ("PUT", format!("/v1/installs/{install}/plan"), Some("c-1"), json!({ "plan": "no-such-plan" }).to_string(), "tenant", 400, "unknown_plan"),
            ("PUT", format!("/v1/installs/{install}/plan"), None, json!({ "plan": "free" }).to_string(), "tenant", 400, "idempotency_key_required"),
            ("PUT", format!("/v1/installs/{install}/plan"), Some("c-2"), json!({ "plan": "lifetime" }).to_string(), "tenant", 409, "same_plan"),
            ("POST", "/v1/revenue-share/policies".into(), None, json!({ "tiers": [{ "up_to": 100, "rate_bp": 0 }, { "up_to": 50, "rate_bp": 100 }, { "rate_bp": 200 }] }).to_string(), "operator", 400, "invalid_policy"),
            ("POST", "/v1/revenue-share/policies".into(), None, json!({ "tiers": [{ "rate_bp": 10001 }] }).to_string(), "operator", 400, "invalid_policy"),
            ("POST", "/v1/revenue-share/policies".into(), None, json!({ "tiers": [{ "rate_bp": 100 }], "effective_from": NOV_1 - 1 }).to_string(), "operator", 400, "retroactive_policy"),
            ("POST", "/v1/revenue-share/policies".into(), None, json!({ "plugin": "acme/thing", "publisher": "nexus-labs", "plan": "x", "tiers": [{ "rate_bp": 100 }] }).to_string(), "operator", 400, "invalid_policy"),
            ("POST", "/v1/billing/runs".into(), None, json!({ "until": NOV_1 + 1 }).to_string(), "operator", 400, "future_billing"),
            ("GET", "/v1/bills/2026-13".into(), None, String::new(), "tenant", 400, "invalid_period"),
            ("GET", "/v1/bills/2027-01".into(), None, String::new(), "tenant", 400, "future_period"),
            ("GET", "/v1/charges?status=lost".into(), None, String::new(), "tenant", 400, "invalid_query"),
        ];
        for (method, uri, key, body, who, status, code) in cases {
            let token = match who {
                "publisher" => &env.publisher,
                "operator" => &env.operator,
                _ => &tenant,
            };
            let mut request =
                Request::builder().method(method).uri(&uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
            if !body.is_empty() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            let (got, _, bytes) = env.raw(request.body(Body::from(body.clone())).unwrap()).await;
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(
                (got.as_u16(), answer["error"]["code"].as_str()),
                (status, Some(code)),
                "{method} {uri} {body}: {answer}"
            );
        }
        // A plan of another plugin, named by its id.
        let (_, other) = env.call("GET", "/v1/plugins/nexus-labs/chat-notifier/plans", None, None).await;
        let other_plan = other[0]["id"].as_str().unwrap();
        let (status, answer) = m
            .keyed("PUT", &format!("/v1/installs/{install}/plan"), &tenant, "c-3", json!({ "plan": other_plan }))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("plan_of_another_plugin"))
        );
        // A key reused for another refund.
        let (status, _) = m
            .keyed(
                "POST",
                &format!("/v1/charges/{charge}/refunds"),
                &env.operator,
                "same",
                json!({ "amount_minor": 10, "reason": "x" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let after_one = written(&m).await;
        let (status, answer) = m
            .keyed(
                "POST",
                &format!("/v1/charges/{charge}/refunds"),
                &env.operator,
                "same",
                json!({ "amount_minor": 20, "reason": "x" }),
            )
            .await;
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "{answer}"
        );
        assert_eq!(written(&m).await, after_one);
        assert_eq!(after_one, (before.0 + 1, before.1), "only the one refund was written");
        m.verify().await;
    });
}

/// A second marketplace node on `m`'s database, billing with the same clock and provider.
async fn second_node(m: &Money) -> nexus_marketplace::Market {
    let config = nexus_marketplace::MarketConfig {
        master_key: nexus_marketplace::secrets::MasterKey::generate().unwrap(),
        host: super::common::host(),
        tenant_limits: Default::default(),
        billing: BillingConfig::sandboxed(m.clock.clone(), m.sandbox.clone()),
        event_compile_wait: nexus_marketplace::runner::EVENT_COMPILE_WAIT,
        mailer: nexus_marketplace::mail::Mailer::files(
            std::env::temp_dir().join("nexus-outbox"),
            nexus_marketplace::mail::Mailer::DEFAULT_FROM,
        )
        .unwrap(),
    };
    nexus_marketplace::Market::open(m.env.market.registry.clone(), config).await.unwrap()
}

#[test]
fn two_nodes_billing_at_once_charge_and_collect_each_period_exactly_once() {
    super::common::runtime().block_on(async {
        let m = Money::new(true, NOV_1).await;
        let env = &m.env;
        m.plan(
            "nexus-labs/pii-redactor",
            json!({ "key": "team", "name": "Team", "model": "subscription",
            "currency": "USD", "price_minor": 2900, "interval": "month" }),
        )
        .await;
        let mut tenants = Vec::new();
        for n in 0..12 {
            let tenant = env.tenant(&format!("tenant-{n}")).await;
            // The install charges its first period at once; the next ones are due later.
            env.install(&tenant, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
            tenants.push(tenant);
        }
        let other = Arc::new(second_node(&m).await);
        // Three months later both nodes bill at the same moment, twice each.
        m.clock.set(NOV_1 + 92 * DAY_MS);
        let until = m.clock.now_ms();
        let (a, b, c, d) = tokio::join!(
            nexus_marketplace::billing::run::run(&env.market, until),
            nexus_marketplace::billing::run::run(&other, until),
            nexus_marketplace::billing::run::run(&env.market, until),
            nexus_marketplace::billing::run::run(&other, until),
        );
        let reports = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        let created: u64 = reports.iter().map(|r| r.charges_created).sum();
        let collected: u64 = reports.iter().map(|r| r.collected).sum();
        // Dec 1, Jan 1 and Feb 1 for each of 12 installs: 36 new periods, each once.
        assert_eq!((created, collected), (36, 36), "{reports:?}");
        let pool = &env.market.db.pool;
        let per_install: Vec<i64> =
            sqlx::query_scalar("SELECT COUNT(*) FROM charges GROUP BY install_id").fetch_all(pool).await.unwrap();
        assert_eq!(per_install, vec![4; 12]);
        assert_eq!(m.sandbox.collected().len(), 48, "each charge collected once");
        m.verify().await;
    });
}

#[test]
fn concurrent_collections_near_a_tier_boundary_pay_the_fees_of_some_sequential_order() {
    super::common::runtime().block_on(async {
        let m = Money::new(true, NOV_1).await;
        let env = &m.env;
        lifetime_echo(&m).await;
        // 0% on the first 200.00, 10% above: the 4th to 6th sale of 60.00 cross it.
        let policy =
            json!({ "publisher": "nexus-labs", "tiers": [{ "up_to": 200, "rate_bp": 0 }, { "rate_bp": 1000 }] });
        let (status, body) = env.post("/v1/revenue-share/policies", &env.operator, policy).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for n in 0..8 {
            let tenant = env.tenant(&format!("buyer-{n}")).await;
            m.sandbox.script(&format!("buyer-{n}").parse().unwrap(), [Scripted::TimeOutBefore]);
            env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        }
        // Every charge waits; two nodes collect them all at once.
        m.clock.advance(DAY_MS);
        let other = Arc::new(second_node(&m).await);
        let until = m.clock.now_ms();
        let runs = (0..4).map(|i| {
            let market = if i % 2 == 0 { env.market.clone() } else { other.clone() };
            async move { nexus_marketplace::billing::run::run(&market, until).await.unwrap() }
        });
        futures_util::future::join_all(runs).await;
        m.run().await;
        // In the order the collections were posted, each fee is the policy's on the lifetime
        // gross before it: exactly a sequential order.
        let fees: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT c.amount_minor, c.fee_minor FROM charges c JOIN ledger_transactions t ON t.charge_id = c.id \
             AND t.kind = 'collection' ORDER BY t.seq",
        )
        .fetch_all(&env.market.db.pool)
        .await
        .unwrap();
        let policy = nexus_money::share::Policy::new(vec![
            nexus_money::share::Tier { up_to: Some(20_000), rate_bp: 0 },
            nexus_money::share::Tier { up_to: None, rate_bp: 1000 },
        ])
        .unwrap();
        let mut lifetime = 0;
        let mut expected = Vec::new();
        for (amount, _) in &fees {
            expected.push((*amount, Some(policy.split(lifetime, *amount).unwrap().fee)));
            lifetime += amount;
        }
        assert_eq!(fees.len(), 8);
        assert_eq!(fees, expected);
        assert_eq!(fees.iter().map(|(_, fee)| fee.unwrap()).sum::<i64>(), 2_800, "10% of the 280.00 above 200.00");
        m.verify().await;
    });
}

#[test]
fn the_money_commands_work_against_a_real_server() {
    use super::common::{issued_token, nexus};
    super::common::runtime().block_on(async {
        let market = super::common::RealMarket::new();
        let (operator, publisher) = (market.operator.clone(), market.publisher.clone());
        let server = market.serve(&["--billing-interval-secs", "0"], &[]);
        let url = server.url.as_str();
        market.publish(url, "echo");
        let as_publisher = [("NEXUS_REGISTRY", url), ("NEXUS_TOKEN", publisher.as_str())];
        let as_operator = [("NEXUS_REGISTRY", url), ("NEXUS_TOKEN", operator.as_str())];
        let ok = |output: std::process::Output| {
            assert!(
                output.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        };

        // A price with too many decimals is refused before anything is sent.
        let lifetime = |price: &str| {
            let args = ["plans", "set", "nexus-labs/echo", "--key", "lifetime", "--name", "Lifetime", "--model"];
            let more = ["one-time", "--currency", "EUR", "--price", price];
            nexus(&[&args[..], &more[..]].concat(), &as_publisher)
        };
        let refused = lifetime("60.001");
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("more decimals than the currency has"),
            "{refused:?}"
        );
        let set = ok(lifetime("60.00"));
        assert!(set.contains("60.00 EUR once"), "{set}");
        let listed = ok(nexus(&["plans", "list", "nexus-labs/echo"], &[("NEXUS_REGISTRY", url)]));
        assert!(listed.contains("lifetime") && listed.contains("no charge"), "{listed}");

        let tenant = issued_token(&nexus(&["tenant", "create", "globex"], &as_operator));
        let as_tenant = [("NEXUS_REGISTRY", url), ("NEXUS_TOKEN", tenant.as_str())];
        // Empty answers say they are empty, and why while the period is open.
        let month = nexus_money::period::month_label(nexus_registry::db::now_ms());
        let none = ok(nexus(&["charges"], &as_tenant));
        assert!(none.starts_with("no charges match"), "{none}");
        let bill = ok(nexus(&["bill", &month], &as_tenant));
        assert!(bill.starts_with(&format!("nothing billed in {month}; the period is still open")), "{bill}");
        let sales = ok(nexus(&["sales", "nexus-labs", "--period", &month], &as_publisher));
        assert!(sales.starts_with(&format!("no sales of nexus-labs collected in {month}; the period")), "{sales}");
        let payouts = ok(nexus(&["payouts", "list", "nexus-labs"], &as_publisher));
        assert!(payouts.starts_with("no payouts to nexus-labs yet"), "{payouts}");
        let statements = ok(nexus(&["statements", "nexus-labs"], &as_publisher));
        assert!(statements.starts_with("no statements for nexus-labs yet: a month's statement starts"), "{statements}");
        let statement = ok(nexus(&["statements", "nexus-labs", &month], &as_publisher));
        assert!(
            statement.starts_with(&format!("no statement for nexus-labs in {month}; the period is still open")),
            "{statement}"
        );
        let usage = ok(nexus(&["usage", "--plugin", "nexus-labs/echo"], &as_publisher));
        assert!(usage.starts_with("nexus-labs/echo has no live installs: nothing is used or owed yet"), "{usage}");

        let day_before = nexus_money::period::day_label(nexus_registry::db::now_ms());
        let installed = nexus(&["install", "nexus-labs/echo", "--plan", "lifetime", "--yes"], &as_tenant);
        let consent = String::from_utf8_lossy(&installed.stderr);
        assert!(consent.contains("on plan   Lifetime (lifetime, revision 1): 60.00 EUR once\n"), "{consent}");
        let installed = ok(installed);
        let install =
            installed.split_whitespace().find(|w| w.starts_with("ins_")).unwrap_or_else(|| panic!("{installed}"));
        let install = install.trim_end_matches([',', '.', ')', ':']).to_string();
        let charges = ok(nexus(&["charges"], &as_tenant));
        let day_after = nexus_money::period::day_label(nexus_registry::db::now_ms());
        // Status, plugin, plan and revision, line, the day it was charged, amount.
        let mut columns: Vec<&str> = charges.lines().next().unwrap().split_whitespace().skip(1).collect();
        assert!([day_before.as_str(), day_after.as_str()].contains(&columns[4]), "{charges}");
        columns.remove(4);
        assert_eq!(columns, ["collected", "nexus-labs/echo", "lifetime@1", "one-time", "60.00", "EUR"], "{charges}");
        let charge = charges.split_whitespace().find(|w| w.starts_with("chg_")).unwrap().to_string();
        // A one-time purchase bills no usage and nothing further; an unknown install is named.
        let usage = ok(nexus(&["usage", &install], &as_tenant));
        assert_eq!(usage, "its plan bills no usage\nnothing further is scheduled to be charged\n");
        let unknown = nexus(&["usage", "ins_0000000000000000"], &as_tenant);
        assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("ins_0000000000000000"));
        let csv = ok(nexus(&["bill", &month, "--csv"], &as_tenant));
        assert_eq!(csv.lines().count(), 2, "{csv}");
        assert!(csv.lines().nth(1).unwrap().ends_with(",EUR,60.00,6000,collected"), "{csv}");

        let refunded = ok(nexus(&["refund", &charge, "--amount", "15.00", "--reason", "goodwill"], &as_operator));
        assert!(refunded.contains("refunded 15.00 EUR"), "{refunded}");
        let sales = ok(nexus(&["sales", "nexus-labs"], &as_publisher));
        assert!(sales.contains("balance owed to nexus-labs: 45.00 EUR"), "{sales}");
        let run = ok(nexus(&["billing", "run"], &as_operator));
        assert!(run.contains("0 charge(s) created"), "{run}");
        let verify = ok(nexus(&["ledger", "verify"], &as_operator));
        // Every one of the fourteen checks (eight of the ledger, five of its rollups, one of
        // the usage hours) passes, and the totals line closes the report.
        assert_eq!(verify.lines().filter(|l| l.starts_with("ok   ")).count(), 14, "{verify}");
        assert!(!verify.contains("FAIL") && verify.lines().last().unwrap().ends_with(" entries"), "{verify}");
        // Payouts, statements and GMV.
        let paid = ok(nexus(&["payouts", "run"], &as_operator));
        assert!(paid.contains(": 1 paid (45.00 EUR)"), "{paid}");
        let listed = ok(nexus(&["payouts", "list", "nexus-labs"], &as_publisher));
        let payout = listed.split_whitespace().find(|w| w.starts_with("pay_")).unwrap().to_string();
        let settled = ok(nexus(&["payouts", "list", "nexus-labs", &payout], &as_publisher));
        assert!(settled.contains("= paid 45.00 EUR"), "{settled}");
        let statement = ok(nexus(&["statements", "nexus-labs", &month], &as_publisher));
        assert!(statement.contains("sales 60.00 EUR") && statement.contains("payouts 45.00 EUR"), "{statement}");
        let csv = ok(nexus(&["statements", "nexus-labs", &month, "--csv"], &as_publisher));
        assert!(csv.lines().last().unwrap().ends_with(",closing,,,,,,,,,,,,,0.00,,,,0"), "{csv}");
        let gmv = ok(nexus(&["gmv"], &as_operator));
        assert!(gmv.contains("GMV        60.00 EUR") && gmv.contains("refunds      15.00 EUR"), "{gmv}");
        // A tenant is not an operator.
        let denied = nexus(&["billing", "run"], &as_tenant);
        assert_eq!(denied.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&denied.stderr).contains("[forbidden]"), "{denied:?}");
        drop(server);
    })
}

#[test]
fn an_uninstall_bills_the_usage_so_far_and_nothing_after() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        let (tenant, install) = metered_tax_install(&m).await;
        m.clock.set(NOV_10);
        send_orders(env, &tenant, 1, 7).await;
        m.clock.set(NOV_15);
        let (status, _) =
            env.call("DELETE", &format!("/v1/installs/{}", install["id"].as_str().unwrap()), Some(&tenant), None).await;
        assert_eq!(status, StatusCode::OK);
        m.clock.set(NOV_20);
        let report = m.run().await;
        assert_eq!(report["charged"], json!({ "EUR": 70 }), "{report}");
        let charges = m.charges("acme").await;
        assert_eq!(summary(&charges), [row("tax-calculator:usage:tax-calculations", "collected", 70, "EUR", Some(0))]);
        assert_eq!(
            (charges[0]["period_start"].as_i64(), charges[0]["period_end"].as_i64()),
            (Some(NOV_1), Some(NOV_15))
        );
        // Months later nothing more is due.
        m.clock.set(DEC_1 + 60 * DAY_MS);
        assert_eq!(m.run().await["charges_created"], 0);
        m.verify().await;
    });
}

#[test]
fn the_ledger_refuses_edits_and_unbalanced_transactions() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        lifetime_echo(&m).await;
        let tenant = env.tenant("globex").await;
        env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        let pool = env.market.db.writer();
        for edit in [
            "UPDATE ledger_entries SET amount_minor = amount_minor + 1",
            "DELETE FROM ledger_entries",
            "UPDATE ledger_transactions SET memo = 'rewritten'",
            "DELETE FROM ledger_transactions",
        ] {
            let refused = sqlx::query(edit).execute(pool).await.unwrap_err().to_string();
            assert!(refused.contains("never"), "{edit}: {refused}");
        }
        // Balanced entries of a transaction that does not exist: a foreign key on SQLite, the
        // per-statement check on PostgreSQL (migration 0039).
        let orphans = "INSERT INTO ledger_entries (transaction_id, leg, account, currency, amount_minor) \
                       VALUES ('ltx_none', 0, 'a', 'EUR', 5), ('ltx_none', 1, 'b', 'EUR', -5)";
        let refused = sqlx::query(orphans).execute(pool).await.unwrap_err().to_string();
        let expected =
            if postgres { "transaction ltx_none that does not exist" } else { "FOREIGN KEY constraint failed" };
        assert!(refused.contains(expected), "{refused}");
        if postgres {
            for table in ["ledger_entries", "ledger_transactions"] {
                let refused = sqlx::query(&format!("TRUNCATE {table} CASCADE")).execute(pool).await.unwrap_err();
                assert!(refused.to_string().contains("never"), "{table}: {refused}");
            }
            // Entries written behind the domain's back that do not balance are refused by the
            // statement that writes them (migration 0038): one leg alone (so also the first
            // half of legs written in two statements), or legs balanced in one currency only.
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO ledger_transactions (id, kind, memo, posted_at) VALUES ('ltx_x', 'charge', 'x', 0)",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            let legs = "INSERT INTO ledger_entries (transaction_id, leg, account, currency, amount_minor) VALUES";
            for unbalanced in [
                format!("{legs} ('ltx_x', 0, 'a', 'EUR', 5)"),
                format!(
                    "{legs} ('ltx_x', 0, 'a', 'EUR', 5), ('ltx_x', 1, 'b', 'EUR', -5), ('ltx_x', 2, 'c', 'USD', 1)"
                ),
            ] {
                let mut attempt = sqlx::Connection::begin(&mut *tx).await.unwrap();
                let refused = sqlx::query(&unbalanced).execute(&mut *attempt).await.unwrap_err().to_string();
                assert!(refused.contains("ltx_x does not balance"), "{unbalanced}: {refused}");
            }
            sqlx::query(&format!("{legs} ('ltx_x', 0, 'a', 'EUR', 5), ('ltx_x', 1, 'b', 'EUR', -5)"))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
        }
        m.verify().await;
    });
}

/// A partner `nexus-labs` owed 60.00 EUR per buyer of echo's lifetime plan, for `buyers`.
async fn owed(m: &Money, buyers: usize) {
    lifetime_echo(m).await;
    for n in 0..buyers {
        let tenant = m.env.tenant(&format!("buyer-{n}")).await;
        m.env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
    }
}

async fn payout_run(m: &Money) -> Value {
    let (status, report) = m.env.post("/v1/payouts/runs", &m.env.operator, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

async fn payouts_of(m: &Money) -> Vec<(String, i64, Option<String>)> {
    let (_, list) = m.env.get("/v1/publishers/nexus-labs/payouts", &m.env.operator).await;
    let mut out: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["status"].as_str().unwrap().to_string(),
                p["amount_minor"].as_i64().unwrap(),
                p["failure_reason"].as_str().map(String::from),
            )
        })
        .collect();
    out.reverse();
    out
}

#[test]
fn a_rejected_payout_returns_the_money_and_a_lost_answer_is_asked_for_not_paid_again() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        owed(&m, 1).await;
        // The partner's finance member hears of the payout sent; a viewer does not.
        for (email, role) in [("fin@nexus-labs.example", Role::Finance), ("view@nexus-labs.example", Role::Viewer)] {
            let org = ("publisher", "nexus-labs");
            people::add_confirmed_member(&m.env.market, email, "Member", "long-enough-password-1", org, role)
                .await
                .unwrap();
        }
        // Rejected: the money is back in the payable; the next period pays it.
        m.sandbox.script_payouts("nexus-labs", [Scripted::Refuse("account_closed".into())]);
        let report = payout_run(&m).await;
        assert_eq!((report["paid"].as_i64(), report["failed"].as_i64()), (Some(0), Some(1)), "{report}");
        assert_eq!(payouts_of(&m).await, [("failed".into(), 6000, Some("account_closed".into()))]);
        let (_, sales) = m.env.get("/v1/publishers/nexus-labs/sales", &m.env.publisher).await;
        assert_eq!(sales["balances"][0]["payable_minor"], 6000, "{sales}");
        assert_eq!(payout_run(&m).await["paid"], 0, "one payout per period, even a failed one");
        // The second half of the month: the answer is lost after the provider paid.
        m.clock.set(NOV_15 + DAY_MS);
        m.sandbox.script_payouts("nexus-labs", [Scripted::TimeOutAfter]);
        let report = payout_run(&m).await;
        assert_eq!((report["paid"].as_i64(), report["pending"].as_i64()), (Some(0), Some(1)), "{report}");
        let (_, sales) = m.env.get("/v1/publishers/nexus-labs/sales", &m.env.publisher).await;
        assert_eq!(sales["balances"][0]["payable_minor"], 0, "pending: out of the payable {sales}");
        // The next run asks the provider about the key and records it paid.
        let report = payout_run(&m).await;
        assert_eq!(
            (report["paid"].as_i64(), report["paid_minor"].clone()),
            (Some(1), json!({ "EUR": 6000 })),
            "{report}"
        );
        assert_eq!(
            payouts_of(&m).await,
            [("failed".into(), 6000, Some("account_closed".into())), ("paid".into(), 6000, None)]
        );
        assert_eq!(m.sandbox.paid().len(), 1, "paid once");
        // Its detail lists the sale and the failed payout's round trip: 0 + 6000 − 6000 + 6000.
        let (_, list) = m.env.get("/v1/publishers/nexus-labs/payouts", &m.env.publisher).await;
        let id = list[0]["id"].as_str().unwrap();
        let (_, detail) = m.env.get(&format!("/v1/publishers/nexus-labs/payouts/{id}"), &m.env.publisher).await;
        let kinds: Vec<&str> =
            detail["lines"].as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["collection", "payout", "payout-returned"]);
        assert_eq!(detail["reconciliation"]["closing_minor"], 6000);
        let mailed: Vec<(String, String)> =
            sqlx::query_as("SELECT recipient, subject FROM mail_outbox WHERE kind = 'payout-sent'")
                .fetch_all(&m.env.market.db.pool)
                .await
                .unwrap();
        assert_eq!(mailed.len(), 1, "one mail for the one payout sent: {mailed:?}");
        assert_eq!(mailed[0].0, "fin@nexus-labs.example");
        assert!(mailed[0].1.ends_with("60.00 EUR sent"), "{mailed:?}");
        m.verify().await;
    });
}

#[test]
fn holds_minimums_and_adjustments_decide_who_is_paid() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        owed(&m, 1).await;
        let env = &m.env;
        let (status, _) = env
            .post("/v1/publishers/nexus-labs/payout-hold", &env.operator, json!({ "reason": "tax form missing" }))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let report = payout_run(&m).await;
        assert_eq!((report["paid"].as_i64(), &report["held"]), (Some(0), &json!(["nexus-labs"])), "{report}");
        let (status, _) = env.call("DELETE", "/v1/publishers/nexus-labs/payout-hold", Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // A higher minimum carries the 60.00 forward; an adjustment lifts it over.
        let (status, _) =
            env.call("PUT", "/v1/payouts/minimums/EUR", Some(&env.operator), Some(r#"{"minimum_minor": 10000}"#)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let report = payout_run(&m).await;
        assert_eq!(report["carried_forward"][0]["balance_minor"], 6000, "{report}");
        let adjust = json!({ "currency": "EUR", "amount_minor": 4000, "reason": "launch bonus" });
        let uri = "/v1/publishers/nexus-labs/adjustments";
        let (status, first) = m.keyed("POST", uri, &env.operator, "bonus-1", adjust.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let (_, again) = m.keyed("POST", uri, &env.operator, "bonus-1", adjust).await;
        assert_eq!(again["id"], first["id"], "the same adjustment, once");
        let report = payout_run(&m).await;
        assert_eq!(report["paid_minor"], json!({ "EUR": 10000 }), "{report}");
        m.verify().await;
    });
}

#[test]
fn bad_payout_and_statement_input_is_refused_with_a_stable_code() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        let env = &m.env;
        let (op, publisher) = (&env.operator, &env.publisher);
        // (method, uri, token, body, status, code)
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("GET", "/v1/publishers/nexus-labs/statements/2026-13", publisher, None, 400, "invalid_period"),
            ("GET", "/v1/publishers/nexus-labs/statements/nov", publisher, None, 400, "invalid_period"),
            ("GET", "/v1/publishers/nexus-labs/statements/2027-01", publisher, None, 400, "future_period"),
            (
                "GET",
                "/v1/publishers/nexus-labs/statements/2026-11?currency=XTS",
                publisher,
                None,
                400,
                "unknown_currency",
            ),
            ("PUT", "/v1/payouts/minimums/EUR", op, Some(r#"{"minimum_minor": -1}"#), 400, "invalid_amount"),
            ("PUT", "/v1/payouts/minimums/EUR", op, Some(r#"{"minimum_minor": 25.5}"#), 422, "invalid_json_fields"),
            ("PUT", "/v1/payouts/minimums/XTS", op, Some(r#"{"minimum_minor": 100}"#), 400, "unknown_currency"),
            ("PUT", "/v1/payouts/minimums/XXX", op, Some(r#"{"minimum_minor": 100}"#), 400, "unknown_currency"),
            (
                "POST",
                "/v1/publishers/nexus-labs/adjustments",
                op,
                Some(r#"{"currency": "EUR", "amount_minor": 5, "reason": "x"}"#),
                400,
                "idempotency_key_required",
            ),
            ("POST", "/v1/publishers/nobody/payout-hold", op, Some(r#"{"reason": "x"}"#), 404, "not_found"),
            ("DELETE", "/v1/publishers/nexus-labs/payout-hold", op, None, 404, "not_found"),
            ("GET", "/v1/publishers/nexus-labs/payouts/pay_0000000000000000", publisher, None, 404, "not_found"),
            ("GET", "/v1/publishers/nobody/statements", op, None, 404, "not_found"),
            ("GET", "/v1/publishers/nobody/statements/2026-11", op, None, 404, "not_found"),
            ("GET", "/v1/publishers/nobody/payouts", op, None, 404, "not_found"),
            ("GET", "/v1/publishers/nobody/sales", op, None, 404, "not_found"),
            ("GET", "/v1/metrics/gmv?interval=hour", op, None, 400, "invalid_query"),
            ("GET", "/v1/metrics/gmv?from=10&to=5", op, None, 400, "invalid_query"),
            ("GET", "/v1/metrics/gmv?interval=day&from=0", op, None, 400, "invalid_query"),
            ("GET", "/v1/metrics/gmv?from=-9223372036854775808&to=9223372036854775807", op, None, 400, "invalid_query"),
            ("GET", "/v1/metrics/ecosystem?to=-9223372036854775808", op, None, 400, "invalid_query"),
        ];
        for (method, uri, token, body, status, code) in cases {
            let (got, answer) = env.call(method, uri, Some(token), body).await;
            assert_eq!(
                (got.as_u16(), answer["error"]["code"].as_str()),
                (status, Some(code)),
                "{method} {uri}: {answer}"
            );
        }
        let (status, answer) = m
            .keyed(
                "POST",
                "/v1/publishers/nexus-labs/adjustments",
                op,
                "a-1",
                json!({ "currency": "XTS", "amount_minor": 5, "reason": "x" }),
            )
            .await;
        assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (400, Some("unknown_currency")));
        let (status, answer) = m
            .keyed(
                "POST",
                "/v1/publishers/nexus-labs/adjustments",
                op,
                "a-2",
                json!({ "currency": "EUR", "amount_minor": 0, "reason": "x" }),
            )
            .await;
        assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (400, Some("invalid_amount")));
        assert_eq!(written(&m).await.0, 0, "nothing was posted");
        m.verify().await;
    });
}

#[test]
fn two_nodes_paying_out_at_once_pay_each_partner_once() {
    super::common::runtime().block_on(async {
        let m = Money::new(true, NOV_1).await;
        owed(&m, 3).await;
        let other = Arc::new(second_node(&m).await);
        let at = m.clock.now_ms();
        let runs = (0..4).map(|i| {
            let market = if i % 2 == 0 { m.env.market.clone() } else { other.clone() };
            async move { nexus_marketplace::billing::payouts::run(&market, at).await.unwrap() }
        });
        let reports = futures_util::future::join_all(runs).await;
        assert_eq!(reports.iter().map(|r| r.paid).sum::<u64>(), 1, "{reports:?}");
        assert_eq!(m.sandbox.paid(), [(m.sandbox.paid()[0].0.clone(), "nexus-labs".to_string(), 18000)]);
        m.verify().await;
    });
}

/// Every row of the money rollups, all-zero rows left out (a rebuild and a posting may differ
/// in those only), in key order.
async fn rollup_rows(m: &Money) -> Vec<String> {
    let mut out = Vec::new();
    let figures = nexus_marketplace::billing::rollups::FIGURES;
    for (table, key, figures) in [
        ("money_rollups", "grain, start_day, currency, publisher, plugin_id, plan_key", &figures[..]),
        ("partner_balances", "publisher, currency", &figures[..9]),
        (
            "partner_entries",
            "publisher, currency, seq, posted_at, transaction_id, kind, COALESCE(charge_id, '-'), \
             COALESCE(refund_id, '-'), COALESCE(payout_id, '-'), COALESCE(adjustment_id, '-'), \
             COALESCE(plugin_id, '-'), COALESCE(plan_key, '-'), COALESCE(line, '-')",
            &["amount_minor", "gross_minor", "fee_minor"][..],
        ),
    ] {
        let columns: Vec<String> = figures.iter().map(|c| format!("CAST({c} AS TEXT)")).collect();
        let sql = format!(
            "SELECT {key}, {} FROM {table} ORDER BY {key}",
            columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
        );
        for row in sqlx::query(&sql).fetch_all(&m.env.market.db.pool).await.unwrap() {
            use sqlx::Row;
            let n = row.len();
            let values: Vec<String> = (0..n)
                .map(|i| {
                    row.try_get::<String, _>(i).or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string())).unwrap()
                })
                .collect();
            if values[n - figures.len()..].iter().all(|v| v == "0") {
                continue;
            }
            out.push(format!("{table}: {}", values.join(" ")));
        }
    }
    out
}

/// Collections in two currencies, a failed collection collected later, refunds of this month's
/// and last month's sales, a downgrade's credit, adjustments both ways, payouts paid and
/// returned, across a month's end.
async fn mixed_workload(m: &Money) {
    let env = &m.env;
    lifetime_echo(m).await;
    m.plan(
        "nexus-labs/pii-redactor",
        json!({ "key": "team", "name": "Team", "model": "subscription", "currency": "USD", "price_minor": 2900,
                "interval": "month" }),
    )
    .await;
    m.plan(
        "nexus-labs/pii-redactor",
        json!({ "key": "starter", "name": "Starter", "model": "subscription", "currency": "USD", "price_minor": 900,
                "interval": "month" }),
    )
    .await;
    let policy = json!({ "publisher": "nexus-labs", "tiers": [{ "up_to": 100, "rate_bp": 0 }, { "rate_bp": 2000 }] });
    let (status, body) = env.post("/v1/revenue-share/policies", &env.operator, policy).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut charges = Vec::new();
    for n in 0..3 {
        let name = format!("buyer-{n}");
        let tenant = env.tenant(&name).await;
        if n == 2 {
            m.sandbox.script(&name.parse().unwrap(), [Scripted::Refuse("card_declined".into())]);
        }
        env.install(&tenant, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        charges.push(m.charges(&name).await[0]["id"].as_str().unwrap().to_string());
    }
    let usd = env.tenant("usd-buyer").await;
    let pii = env.install(&usd, "nexus-labs/pii-redactor", json!({ "plan": "team" })).await;
    m.clock.set(NOV_2);
    m.run().await;
    let refund = |charge: &str, key: &str, amount: i64| {
        let uri = format!("/v1/charges/{charge}/refunds");
        let body = json!({ "amount_minor": amount, "reason": "goodwill" });
        let key = key.to_string();
        async move {
            let (status, refund) = m.keyed("POST", &uri, &env.operator, &key, body).await;
            assert_eq!(status, StatusCode::CREATED, "{refund}");
        }
    };
    refund(&charges[0], "r-1", 1500).await;
    let adjust = |key: &str, amount: i64| {
        let body = json!({ "currency": "EUR", "amount_minor": amount, "reason": "correction" });
        let key = key.to_string();
        async move {
            let (status, adjusted) =
                m.keyed("POST", "/v1/publishers/nexus-labs/adjustments", &env.operator, &key, body).await;
            assert_eq!(status, StatusCode::CREATED, "{adjusted}");
        }
    };
    adjust("a-1", 4000).await;
    adjust("a-2", -500).await;
    m.clock.set(NOV_10);
    assert_eq!(payout_run(m).await["paid"], 2, "EUR and USD");
    // A downgrade mid-period credits the unused part of the period (a refund).
    m.clock.set(NOV_15);
    let pii_id = pii["id"].as_str().unwrap();
    let (status, moved) =
        m.keyed("PUT", &format!("/v1/installs/{pii_id}/plan"), &usd, "down-1", json!({ "plan": "starter" })).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    m.clock.set(NOV_20);
    let late = env.tenant("late-buyer").await;
    env.install(&late, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
    m.sandbox.script_payouts("nexus-labs", [Scripted::Refuse("account_closed".into())]);
    assert_eq!(payout_run(m).await["failed"], 1);
    // December: a refund of a November sale, and the returned money paid out.
    m.clock.set(DEC_1 + DAY_MS);
    refund(&charges[1], "r-2", 2000).await;
    m.run().await;
    let report = payout_run(m).await;
    assert_eq!(report["paid"], 1, "EUR, the returned payout's money among it (USD owes: {report})");
}

#[test]
fn the_rollups_equal_a_recomputation_after_a_mixed_workload() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        mixed_workload(&m).await;
        let report = m.verify().await;
        assert!(report["elapsed_ms"].is_u64(), "verify says how long it took: {report}");
        let posted = rollup_rows(&m).await;
        assert!(posted.iter().any(|r| r.starts_with("money_rollups: month")), "{posted:#?}");
        assert!(posted.iter().any(|r| r.starts_with("partner_entries:")), "{posted:#?}");
        let rebuilt = nexus_marketplace::billing::rollups::rebuild(&m.env.market).await.unwrap();
        assert_eq!(
            rebuilt.partner_entries as usize,
            posted.iter().filter(|r| r.starts_with("partner_entries")).count()
        );
        assert_eq!(rollup_rows(&m).await, posted, "the rollups written with the postings are the ledger's");
        m.verify().await;

        // The readers agree with the charges they summarize.
        let env = &m.env;
        let (_, sales) = env.get("/v1/publishers/nexus-labs/sales?period=2026-11", &env.publisher).await;
        let eur = sales["rows"].as_array().unwrap().iter().find(|r| r["currency"] == "EUR").unwrap().clone();
        assert_eq!(
            (&eur["charges"], &eur["gross_minor"], &eur["refunded_minor"]),
            (&json!(4), &json!(24000), &json!(3500)),
            "November's sales with December's refund of one of them: {sales}"
        );
        let (_, list) = env.get("/v1/publishers/nexus-labs/statements", &env.publisher).await;
        let mut december: Vec<(&str, i64)> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["period"] == "2026-12")
            .map(|s| (s["currency"].as_str().unwrap(), s["closing_minor"].as_i64().unwrap()))
            .collect();
        december.sort();
        let owed: Vec<(&str, i64)> = sales["balances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["currency"].as_str().unwrap(), b["payable_minor"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            (december.len(), &december),
            (2, &owed),
            "this month's statements close at the balance owed: {list}"
        );
        assert_eq!(owed[0], ("EUR", 0), "paid out: {sales}");
    });
}

#[test]
fn ledger_verify_catches_rollups_that_disagree_and_a_rebuild_mends_them() {
    on_both(|postgres| async move {
        let m = Money::new(postgres, NOV_1).await;
        owed(&m, 2).await;
        m.clock.set(NOV_2);
        payout_run(&m).await;
        m.verify().await;
        let writer = m.env.market.db.writer();
        for tamper in [
            "UPDATE money_rollups SET gross_minor = gross_minor + 1 WHERE grain = 'day'",
            "UPDATE partner_balances SET payable_minor = payable_minor - 7",
            "DELETE FROM partner_entries WHERE seq = (SELECT MIN(seq) FROM partner_entries)",
        ] {
            sqlx::query(tamper).execute(writer).await.unwrap();
        }
        let (status, report) = m.env.get("/v1/ledger/verify", &m.env.operator).await;
        assert_eq!((status, &report["ok"]), (StatusCode::OK, &json!(false)), "{report}");
        let failed: Vec<(&str, Vec<&str>)> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| {
                let differences = c["differences"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
                (c["name"].as_str().unwrap(), differences)
            })
            .collect();
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "the daily money rollups equal the ledger's collections, refunds, fees, payables and payouts",
                "the monthly money rollups add up the daily ones",
                "each partner's running totals add up its daily rollups",
                "each partner's statement index lists exactly the postings on its payable",
                "each partner's running balance is its payable account's balance",
            ],
            "{report}"
        );
        assert!(
            failed[0].1[0].starts_with("`day` 2026-11-01 `EUR` `nexus-labs` `nexus-labs/echo` `lifetime`: "),
            "{report}"
        );
        assert!(failed[0].1[0].contains("gross_minor -1"), "{report}");
        assert!(failed[3].1[0].contains("amount_minor +6000, gross_minor +6000, postings +1"), "{report}");
        nexus_marketplace::billing::rollups::rebuild(&m.env.market).await.unwrap();
        m.verify().await;
    });
}
