//! The money providers outside the marketplace: a [`PaymentProvider`] collects from tenants,
//! a [`PayoutProvider`] pays partners. Both work under idempotency keys (a second request with
//! a key returns the first outcome and moves no money) and answer what happened to a key,
//! so an outcome lost to a timeout or a crash is asked for, never done again.
//!
//! [`SandboxProvider`] is built in and is both: no money moves; every request succeeds
//! unless a test (or the demo) scripted a party's next answers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use nexus_money::Currency;
use nexus_registry::Db;
use serde::{Deserialize, Serialize};

use crate::accounts::TenantId;

/// A request to move `amount_minor` of `currency` from (collection) or to (payout) `party`,
/// once per `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderRequest {
    pub key: String,
    /// The tenant paying, or the partner paid.
    pub party: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub description: String,
}

/// What the provider did with a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The money moved; the provider's reference for it.
    Succeeded { reference: String },
    /// Declined (a card) or rejected (a bank account), with the provider's reason.
    Refused { reason: String },
}

/// The provider could not say: the request may or may not have been carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
}

/// Collects from tenants.
pub trait PaymentProvider: Send + Sync {
    fn collect<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>>;
    /// The outcome of a collection `key`, or `None` if the provider never carried it out.
    fn collection<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>>;
}

/// Pays partners.
pub trait PayoutProvider: Send + Sync {
    fn pay<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>>;
    /// The outcome of a payout `key`, or `None` if the provider never carried it out.
    fn payout<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>>;
}

/// A provider asked only once what was committed before the call is durable
/// ([`Db::durable`]): the claim of an attempt, the payout row, reach the disk before money
/// moves on the strength of them. Wraps whichever providers a marketplace is given.
pub struct AfterDurable<P: ?Sized> {
    db: Db,
    inner: Arc<P>,
}

impl<P: ?Sized> AfterDurable<P> {
    pub fn new(db: Db, inner: Arc<P>) -> Self {
        Self { db, inner }
    }

    async fn durable(&self) -> Result<(), ProviderError> {
        // Not durable means not asked: the caller records the attempt as unknown and a
        // later run asks again under the same key.
        self.db.durable().await.map_err(|error| ProviderError::Unavailable(format!("local storage: {error}")))
    }
}

impl<P: PaymentProvider + ?Sized> PaymentProvider for AfterDurable<P> {
    fn collect<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>> {
        Box::pin(async move {
            self.durable().await?;
            self.inner.collect(request).await
        })
    }

    fn collection<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>> {
        Box::pin(async move {
            self.durable().await?;
            self.inner.collection(key).await
        })
    }
}

impl<P: PayoutProvider + ?Sized> PayoutProvider for AfterDurable<P> {
    fn pay<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>> {
        Box::pin(async move {
            self.durable().await?;
            self.inner.pay(request).await
        })
    }

    fn payout<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>> {
        Box::pin(async move {
            self.durable().await?;
            self.inner.payout(key).await
        })
    }
}

/// One scripted answer of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    Succeed,
    /// Decline the card, or reject the payout, with this reason.
    Refuse(String),
    /// Do it, then fail to answer in time: asking about the key finds it succeeded.
    TimeOutAfter,
    /// Fail to answer before doing anything: asking about the key finds nothing.
    TimeOutBefore,
}

/// Which way money moves through the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Collection,
    Payout,
}

/// The built-in provider of both kinds. With a journal (`nexus serve` keeps one in its data
/// folder) each outcome is appended and synced before it is answered, and read back at
/// start, so the sandbox remembers what it did across a crash as a real provider would: a
/// request cut short by a killed node is found done, not done again.
#[derive(Debug, Default)]
pub struct SandboxProvider {
    state: Mutex<Sandbox>,
    journal: Option<std::path::PathBuf>,
}

/// One line of the sandbox's journal.
#[derive(Debug, Serialize, Deserialize)]
struct Journaled {
    side: Side,
    key: String,
    party: String,
    amount_minor: i64,
    outcome: Outcome,
}

#[derive(Debug, Default)]
struct Sandbox {
    scripts: HashMap<(Side, String), VecDeque<Scripted>>,
    outcomes: HashMap<(Side, String), Outcome>,
    /// What succeeded, in order: (side, key, party, amount).
    done: Vec<(Side, String, String, i64)>,
    calls: u64,
}

impl SandboxProvider {
    /// A sandbox that journals its outcomes to `path` (created if missing) and remembers
    /// those already there.
    pub fn journaled(path: std::path::PathBuf) -> std::io::Result<Self> {
        let mut sandbox = Sandbox::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A line cut short by a crash was never answered: it did not happen.
                for entry in text.lines().filter_map(|line| serde_json::from_str::<Journaled>(line).ok()) {
                    if matches!(entry.outcome, Outcome::Succeeded { .. }) {
                        sandbox.done.push((entry.side, entry.key.clone(), entry.party, entry.amount_minor));
                    }
                    sandbox.outcomes.insert((entry.side, entry.key), entry.outcome);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(Self { state: Mutex::new(sandbox), journal: Some(path) })
    }

    /// Queues a tenant's next answers to collections; once used, collections succeed again.
    pub fn script(&self, tenant: &TenantId, answers: impl IntoIterator<Item = Scripted>) {
        self.script_side(Side::Collection, tenant.as_str(), answers);
    }

    /// Queues a partner's next answers to payouts.
    pub fn script_payouts(&self, partner: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.script_side(Side::Payout, partner, answers);
    }

    fn script_side(&self, side: Side, party: &str, answers: impl IntoIterator<Item = Scripted>) {
        if let Ok(mut state) = self.state.lock() {
            state.scripts.entry((side, party.to_string())).or_default().extend(answers);
        }
    }

    /// What the sandbox collected: (key, tenant, amount) in order.
    pub fn collected(&self) -> Vec<(String, String, i64)> {
        self.done(Side::Collection)
    }

    /// What the sandbox paid out: (key, partner, amount) in order.
    pub fn paid(&self) -> Vec<(String, String, i64)> {
        self.done(Side::Payout)
    }

    fn done(&self, side: Side) -> Vec<(String, String, i64)> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        state
            .done
            .iter()
            .filter(|d| d.0 == side)
            .map(|(_, key, party, amount)| (key.clone(), party.clone(), *amount))
            .collect()
    }

    /// How often the sandbox was asked to move money, repeats included.
    pub fn calls(&self) -> u64 {
        self.state.lock().map(|s| s.calls).unwrap_or(0)
    }

    fn record(&self, side: Side, request: &ProviderRequest, outcome: &Outcome) -> Result<(), ProviderError> {
        let Some(path) = &self.journal else { return Ok(()) };
        let entry = Journaled {
            side,
            key: request.key.clone(),
            party: request.party.clone(),
            amount_minor: request.amount_minor,
            outcome: outcome.clone(),
        };
        let line = serde_json::to_string(&entry).map_err(|e| ProviderError::Unavailable(e.to_string()))? + "\n";
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        };
        write().map_err(|e| ProviderError::Unavailable(format!("sandbox journal: {e}")))
    }

    fn answer(&self, side: Side, request: &ProviderRequest) -> Result<Outcome, ProviderError> {
        let mut state = self.state.lock().map_err(|_| ProviderError::Unavailable("sandbox state poisoned".into()))?;
        state.calls += 1;
        let key = (side, request.key.clone());
        if let Some(done) = state.outcomes.get(&key) {
            return Ok(done.clone());
        }
        let party = (side, request.party.clone());
        let next = state.scripts.get_mut(&party).and_then(VecDeque::pop_front).unwrap_or(Scripted::Succeed);
        let succeeded = Outcome::Succeeded { reference: format!("sandbox-{}", state.done.len() + 1) };
        let (outcome, answer) = match next {
            Scripted::Succeed => (Some(succeeded.clone()), Ok(succeeded)),
            Scripted::Refuse(reason) => {
                let refused = Outcome::Refused { reason };
                (Some(refused.clone()), Ok(refused))
            }
            Scripted::TimeOutAfter => (Some(succeeded), Err(ProviderError::Timeout)),
            Scripted::TimeOutBefore => (None, Err(ProviderError::Timeout)),
        };
        if let Some(outcome) = outcome {
            self.record(side, request, &outcome)?;
            if matches!(outcome, Outcome::Succeeded { .. }) {
                state.done.push((side, request.key.clone(), request.party.clone(), request.amount_minor));
            }
            state.outcomes.insert(key, outcome);
        }
        answer
    }

    fn lookup(&self, side: Side, key: &str) -> Result<Option<Outcome>, ProviderError> {
        let state = self.state.lock().map_err(|_| ProviderError::Unavailable("sandbox state poisoned".into()))?;
        Ok(state.outcomes.get(&(side, key.to_string())).cloned())
    }
}

impl PaymentProvider for SandboxProvider {
    fn collect<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>> {
        Box::pin(async move { self.answer(Side::Collection, request) })
    }

    fn collection<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>> {
        Box::pin(async move { self.lookup(Side::Collection, key) })
    }
}

impl PayoutProvider for SandboxProvider {
    fn pay<'a>(&'a self, request: &'a ProviderRequest) -> BoxFuture<'a, Result<Outcome, ProviderError>> {
        Box::pin(async move { self.answer(Side::Payout, request) })
    }

    fn payout<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Outcome>, ProviderError>> {
        Box::pin(async move { self.lookup(Side::Payout, key) })
    }
}
