//! How a client sends: each request takes one from the budget; a keyed request is sent
//! again under the same key when the dice say so, beside the first or after it answered;
//! every answer goes into the client's tally, which names the ones that are not documented.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::{Answer, Api, Request};
use super::shared::{Budget, Dice, Progress, RetryMix};
use super::tally::{Kind, Retry, Tally};

/// Why a client's sequence stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The budget is spent: the load is over.
    Spent,
    /// A request was answered other than documented (it is in the tally).
    Failed,
}

pub type Step<T> = Result<T, Halt>;

pub struct Sender {
    pub api: Api,
    pub tally: Tally,
    dice: Dice,
    mix: RetryMix,
    budget: Arc<Budget>,
    progress: Arc<Progress>,
    pace: Option<Pace>,
}

/// A client's schedule when the load is paced (`--rate`): one first send every `every`,
/// from `next`. A send that starts late is timed from its slot, not from when it went out,
/// so a slow server cannot hide its queue by slowing the client down (coordinated omission).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub next: Instant,
    pub every: Duration,
}

impl Sender {
    pub fn new(
        api: Api,
        dice: Dice,
        mix: RetryMix,
        budget: Arc<Budget>,
        progress: Arc<Progress>,
        pace: Option<Pace>,
    ) -> Self {
        Self { api, tally: Tally::default(), dice, mix, budget, progress, pace }
    }

    /// Waits for this client's next slot when paced; how late the send starts after it.
    async fn wait_for_slot(&mut self) -> Duration {
        let Some(pace) = &mut self.pace else { return Duration::ZERO };
        let slot = pace.next;
        pace.next += pace.every;
        tokio::time::sleep_until(slot.into()).await;
        Instant::now().saturating_duration_since(slot)
    }

    /// Sends `request` once.
    pub async fn plain(&mut self, kind: Kind, request: &Request) -> Step<Answer> {
        self.exchange(kind, request, None).await
    }

    /// Sends `request` (which carries a key), and again beside it or after it as the dice
    /// say.
    pub async fn keyed(&mut self, kind: Kind, request: &Request) -> Step<Answer> {
        let retry = self.dice.retry(self.mix);
        self.exchange(kind, request, retry).await
    }

    /// The answer with the documented status: the first's, else its retry's (which then took
    /// effect in its place, so the caller follows the server's state; the tally still holds
    /// the failure).
    async fn exchange(&mut self, kind: Kind, request: &Request, retry: Option<Retry>) -> Step<Answer> {
        let late = self.wait_for_slot().await;
        if !self.budget.take() {
            return Err(Halt::Spent);
        }
        let (mut first, copy) = match retry {
            None => (self.api.send(request).await, None),
            Some(Retry::Concurrent) => {
                let (first, copy) = tokio::join!(self.api.send(request), self.api.send(request));
                (first, Some((Retry::Concurrent, copy)))
            }
            Some(Retry::After) => {
                let first = self.api.send(request).await;
                (first, Some((Retry::After, self.api.send(request).await)))
            }
        };
        first.latency += late;
        let failures = self.tally.failure_count;
        self.tally.record(kind, request, &first, copy.as_ref().map(|(when, answer)| (*when, answer)));
        self.progress.answered(1 + u64::from(copy.is_some()), self.tally.failure_count > failures);
        let expected = kind.expected();
        match copy {
            _ if first.is(expected) => Ok(first),
            Some((_, copy)) if copy.is(expected) => Ok(copy),
            _ => Err(Halt::Failed),
        }
    }

    /// Records that `answer` is not what `request` documents (`why`) and halts the sequence.
    pub fn failed<T>(&mut self, kind: Kind, request: &Request, answer: &Answer, why: &str) -> Step<T> {
        self.failed_detailed(kind, request, answer, why, "")
    }

    /// [`Sender::failed`] with `detail` on this occurrence.
    pub fn failed_detailed<T>(
        &mut self,
        kind: Kind,
        request: &Request,
        answer: &Answer,
        why: &str,
        detail: &str,
    ) -> Step<T> {
        self.tally.fail_detailed(kind, request, answer, why, detail);
        self.progress.answered(0, true);
        Err(Halt::Failed)
    }

    /// [`Sender::failed`] unless `ok`.
    pub fn check(&mut self, kind: Kind, request: &Request, answer: &Answer, ok: bool, why: &str) -> Step<()> {
        if ok { Ok(()) } else { self.failed(kind, request, answer, why) }
    }
}
