//! One tenant's client, in a loop until the budget is spent: buy echo on its one-time plan
//! and pii-redactor on a subscription, send events, move the subscription to another plan
//! (and back, every other round), have the operator look up the one-time charge and refund
//! part of it, send events again, uninstall both. Requests that move money or create
//! something carry an `Idempotency-Key`. Each answer is checked against what the API
//! documents, and what it says must now be true is noted for the checks after the load.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use super::api::{Answer, Request};
use super::expected::{Expected, Purchase};
use super::send::{Halt, Sender, Step};
use super::setup::{LIFETIME, PRO, Plugin, Setup, TEAM, Tenant};
use super::tally::{Kind, Tally};

/// What the operator refunds of each one-time charge, in minor units.
pub const REFUND_MINOR: i64 = 100;

/// What every tenant's client shares.
pub struct Shared {
    pub setup: Arc<Setup>,
    pub operator: Arc<str>,
    /// Events sent after the purchases and again after the plan change.
    pub events: u32,
}

struct Client {
    sender: Sender,
    tenant: Tenant,
    shared: Arc<Shared>,
    expected: Expected,
    /// Numbers this client's idempotency keys and events.
    sent: u64,
    /// The tenant's installs that are live now.
    live: BTreeSet<String>,
}

/// Runs the tenant's rounds until the budget is spent, or until a failure leaves it unable
/// to start a clean round.
pub async fn run(sender: Sender, tenant: Tenant, shared: Arc<Shared>) -> (Tally, Expected) {
    let mut client = Client { sender, tenant, shared, expected: Expected::default(), sent: 0, live: BTreeSet::new() };
    let mut round = 0_u64;
    loop {
        match client.round(round).await {
            Ok(()) => {}
            Err(Halt::Spent) => break,
            Err(Halt::Failed) => {
                if client.resync().await.is_err() {
                    break;
                }
            }
        }
        round += 1;
    }
    (client.sender.tally, client.expected)
}

impl Client {
    async fn round(&mut self, round: u64) -> Step<()> {
        let setup = self.shared.setup.clone();
        let once = self.buy(Kind::InstallOneTime, &setup.echo, LIFETIME).await?;
        let monthly = self.buy(Kind::InstallSubscription, &setup.redactor, PRO).await?;
        self.events().await?;
        self.change_plan(&monthly, TEAM).await?;
        if round % 2 == 1 {
            self.change_plan(&monthly, PRO).await?;
        }
        let charge = self.one_time_charge(&once).await?;
        self.refund(&once, &charge).await?;
        self.events().await?;
        self.uninstall(&once).await?;
        self.uninstall(&monthly).await
    }

    fn next_key(&mut self) -> String {
        self.sent += 1;
        format!("{}-{}", self.tenant.id, self.sent)
    }

    fn request(&self, method: Method, path: impl Into<String>) -> Request {
        Request::new(method, path, &self.tenant.token)
    }

    async fn buy(&mut self, kind: Kind, plugin: &Plugin, plan: &str) -> Step<String> {
        let body = json!({ "plugin": plugin.id, "plan": plan, "consent": plugin.consent });
        let request = self.request(Method::POST, "/v1/installs").json(body).key(self.next_key());
        let answer = self.sender.keyed(kind, &request).await?;
        let install = answer.json();
        let Some(id) = install["id"].as_str().map(str::to_string) else {
            return self.sender.failed(kind, &request, &answer, "no install id in the answer");
        };
        self.expected.purchases.insert(id.clone(), Purchase::new(&self.tenant.id, &plugin.id, plan));
        self.live.insert(id.clone());
        let active = install["status"] == "active";
        self.sender.check(kind, &request, &answer, active, "a paid install must answer active: collected first")?;
        self.sender.check(kind, &request, &answer, install["plan"] == plan, "on another plan than bought")?;
        Ok(id)
    }

    /// Events to the tenant: each must reach every live install, once, and succeed.
    async fn events(&mut self) -> Step<()> {
        for _ in 0..self.shared.events {
            let key = self.next_key();
            let payload = json!({ "n": self.sent, "note": "write to ada@example.com or call +1 415 555 0100" });
            let body = json!({ "type": "market.ping", "payload": payload });
            let request = self.request(Method::POST, "/v1/events").json(body).key(key);
            let answer = self.sender.keyed(Kind::Event, &request).await?;
            self.receipt(&request, &answer)?;
        }
        Ok(())
    }

    fn receipt(&mut self, request: &Request, answer: &Answer) -> Step<()> {
        let receipt = answer.json();
        let deliveries = receipt["deliveries"].as_array().cloned().unwrap_or_default();
        let mut reached = BTreeSet::new();
        for delivery in &deliveries {
            let install = delivery["install"].as_str().unwrap_or_default();
            self.expected.delivered(install);
            reached.insert(install.to_string());
        }
        if reached != self.live || deliveries.len() != self.live.len() {
            let detail =
                format!("delivered {} times to {reached:?}; the live installs are {:?}", deliveries.len(), self.live);
            let why = "delivered to other installs than the tenant's live ones";
            return self.sender.failed_detailed(Kind::Event, request, answer, why, &detail);
        }
        let ok = deliveries.iter().all(|delivery| delivery["outcome"] == "ok");
        self.sender.check(Kind::Event, request, answer, ok, "a delivery's outcome is not ok")
    }

    async fn change_plan(&mut self, install: &str, plan: &str) -> Step<()> {
        let path = format!("/v1/installs/{install}/plan");
        let request = self.request(Method::PUT, path).json(json!({ "plan": plan })).key(self.next_key());
        let answer = self.sender.keyed(Kind::PlanChange, &request).await?;
        if let Some(purchase) = self.expected.purchases.get_mut(install) {
            purchase.plan = plan.to_string();
            purchase.plan_changes += 1;
        }
        let changed = answer.json();
        let kind = Kind::PlanChange;
        self.sender.check(kind, &request, &answer, changed["plan"] == plan, "on another plan than asked for")?;
        let active = changed["status"] == "active";
        self.sender.check(kind, &request, &answer, active, "not active: the change's charge must be collected first")
    }

    /// The operator finds the install's one-time charge.
    async fn one_time_charge(&mut self, install: &str) -> Step<String> {
        let request = Request::new(Method::GET, format!("/v1/charges?install={install}"), &self.shared.operator);
        let answer = self.sender.plain(Kind::ChargeLookup, &request).await?;
        let items = answer.json()["items"].as_array().cloned().unwrap_or_default();
        let found = items.iter().find(|charge| charge["line"] == "one-time").and_then(|charge| charge["id"].as_str());
        match found {
            Some(id) => Ok(id.to_string()),
            None => self.sender.failed(Kind::ChargeLookup, &request, &answer, "the install has no one-time charge"),
        }
    }

    /// The operator refunds part of it, as a goodwill gesture.
    async fn refund(&mut self, install: &str, charge: &str) -> Step<()> {
        let body = json!({ "amount_minor": REFUND_MINOR, "reason": "goodwill (load test)" });
        let key = format!("refund-{}", self.next_key());
        let request = Request::new(Method::POST, format!("/v1/charges/{charge}/refunds"), &self.shared.operator)
            .json(body)
            .key(key);
        let answer = self.sender.keyed(Kind::Refund, &request).await?;
        if let Some(purchase) = self.expected.purchases.get_mut(install) {
            purchase.refunded_minor += REFUND_MINOR;
        }
        let refund = answer.json();
        let exact = refund["amount_minor"] == REFUND_MINOR && refund["kind"] == "refund" && refund["charge"] == charge;
        self.sender.check(Kind::Refund, &request, &answer, exact, "another refund than asked for")
    }

    async fn uninstall(&mut self, install: &str) -> Step<()> {
        let request = self.request(Method::DELETE, format!("/v1/installs/{install}"));
        let answer = self.sender.plain(Kind::Uninstall, &request).await?;
        self.live.remove(install);
        if let Some(purchase) = self.expected.purchases.get_mut(install) {
            purchase.uninstalled = true;
        }
        let gone = answer.json()["status"] == "uninstalled";
        self.sender.check(Kind::Uninstall, &request, &answer, gone, "not uninstalled")
    }

    /// After a failure: the installs the API says are live are uninstalled, so the next round
    /// starts from none.
    async fn resync(&mut self) -> Step<()> {
        let request = self.request(Method::GET, "/v1/installs?per_page=100");
        let answer = self.sender.plain(Kind::InstallList, &request).await?;
        let items = answer.json()["items"].as_array().cloned().unwrap_or_default();
        self.live = items.iter().filter_map(|install| install["id"].as_str().map(str::to_string)).collect();
        for install in self.live.clone() {
            self.uninstall(&install).await?;
        }
        Ok(())
    }
}
