//! What the market scenario's requests were answered, per kind of request: statuses,
//! latencies of the answers with the documented status, retries and how their answers
//! compared with the first, and every failure named precisely (the request and its answer).

use std::collections::BTreeMap;
use std::time::Duration;

use super::api::{Answer, Request};

/// Failures kept word for word per kind of failure; past this only their number grows.
const EXAMPLES: usize = 3;

/// The kinds of request, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    InstallOneTime,
    InstallSubscription,
    PlanChange,
    Refund,
    Uninstall,
    Publish,
    Event,
    ChargeLookup,
    InstallList,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Self::InstallOneTime => "install, one-time plan",
            Self::InstallSubscription => "install, subscription",
            Self::PlanChange => "plan change",
            Self::Refund => "refund (operator)",
            Self::Uninstall => "uninstall",
            Self::Publish => "publish (publisher)",
            Self::Event => "event",
            Self::ChargeLookup => "charge lookup (operator)",
            Self::InstallList => "install list",
        }
    }

    /// The status the API documents for this request when it is valid.
    pub fn expected(self) -> u16 {
        match self {
            Self::InstallOneTime | Self::InstallSubscription | Self::Refund | Self::Publish => 201,
            Self::PlanChange | Self::Uninstall | Self::Event | Self::ChargeLookup | Self::InstallList => 200,
        }
    }
}

/// When a keyed request was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// At the same moment as the first, on another connection.
    Concurrent,
    /// Once the first had answered.
    After,
}

#[derive(Debug, Default)]
pub struct KindTally {
    /// First sends (retries not counted).
    pub requests: u64,
    /// Of those, how many were sent again under the same key.
    pub retried: u64,
    /// First sends by status (`transport` when there was none).
    pub statuses: BTreeMap<String, u64>,
    /// Latencies of the first sends answered with the documented status.
    pub latencies: Vec<Duration>,
}

#[derive(Debug, Default)]
pub struct Retries {
    pub concurrent: u64,
    pub after: u64,
    /// Retries whose answer matched the first's in status, body and replay marking.
    pub matched: u64,
    /// Retries sent after a first that failed (5xx, or no answer): they run again, so their
    /// answer is not compared (the first's failure is counted already).
    pub after_failure: u64,
    /// Retries by status (`transport` when there was none).
    pub statuses: BTreeMap<String, u64>,
    pub latencies: Vec<Duration>,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub kinds: BTreeMap<Kind, KindTally>,
    pub retries: Retries,
    /// Answers with a 5xx status, retries included.
    pub server_errors: u64,
    /// `409 idempotency_in_progress` to a retry sent after its first request had answered.
    pub in_progress_after_answer: u64,
    /// The same to a retry sent beside its first request.
    pub in_progress_concurrent: u64,
    /// Answers not as documented, by what was wrong (request kind, answer, why).
    pub failures: BTreeMap<String, Failures>,
    pub failure_count: u64,
}

/// One kind of failure: how often, and the first few word for word.
#[derive(Debug, Default)]
pub struct Failures {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Tally {
    /// One request, and its retry if it was sent again.
    pub fn record(&mut self, kind: Kind, request: &Request, first: &Answer, retry: Option<(Retry, &Answer)>) {
        let tally = self.kinds.entry(kind).or_default();
        tally.requests += 1;
        tally.retried += u64::from(retry.is_some());
        *tally.statuses.entry(status_key(first)).or_default() += 1;
        if first.is(kind.expected()) {
            tally.latencies.push(first.latency);
        } else {
            self.fail(kind, request, first, &format!("expected {}", kind.expected()));
        }
        self.count_errors(first, None);
        if let Some((when, copy)) = retry {
            self.record_retry(kind, request, first, when, copy);
        }
    }

    fn record_retry(&mut self, kind: Kind, request: &Request, first: &Answer, when: Retry, copy: &Answer) {
        match when {
            Retry::Concurrent => self.retries.concurrent += 1,
            Retry::After => self.retries.after += 1,
        }
        self.retries.latencies.push(copy.latency);
        *self.retries.statuses.entry(status_key(copy)).or_default() += 1;
        self.count_errors(copy, Some(when));
        if when == Retry::After && first.status.is_none_or(|status| status >= 500) {
            self.retries.after_failure += 1;
            return;
        }
        let problems = retry_problems(first, when, copy);
        if problems.is_empty() {
            self.retries.matched += 1;
            return;
        }
        let when = match when {
            Retry::Concurrent => "sent beside the first",
            Retry::After => "sent after the first answered",
        };
        let why = format!("retry {when}: {}; the first was answered {}", problems.join("; "), first.summary());
        self.fail(kind, request, copy, &why);
    }

    fn count_errors(&mut self, answer: &Answer, retry: Option<Retry>) {
        self.server_errors += u64::from(answer.status.is_some_and(|status| status >= 500));
        if answer.is(409) && answer.error_code().as_deref() == Some("idempotency_in_progress") {
            match retry {
                Some(Retry::After) => self.in_progress_after_answer += 1,
                Some(Retry::Concurrent) | None => self.in_progress_concurrent += 1,
            }
        }
    }

    /// A request answered other than documented: `why` (which groups it with others like
    /// it), the request and the answer.
    pub fn fail(&mut self, kind: Kind, request: &Request, answer: &Answer, why: &str) {
        self.fail_detailed(kind, request, answer, why, "");
    }

    /// [`Tally::fail`] with `detail` on this occurrence (ids, counts).
    pub fn fail_detailed(&mut self, kind: Kind, request: &Request, answer: &Answer, why: &str, detail: &str) {
        self.failure_count += 1;
        let failures = self.failures.entry(format!("{} -> {}: {why}", kind.label(), answer.summary())).or_default();
        failures.count += 1;
        if failures.examples.len() < EXAMPLES {
            let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
            failures.examples.push(format!("{} -> {}{detail}", request.describe(), answer.describe()));
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (kind, theirs) in other.kinds {
            let ours = self.kinds.entry(kind).or_default();
            ours.requests += theirs.requests;
            ours.retried += theirs.retried;
            ours.latencies.extend(theirs.latencies);
            for (status, count) in theirs.statuses {
                *ours.statuses.entry(status).or_default() += count;
            }
        }
        self.retries.concurrent += other.retries.concurrent;
        self.retries.after += other.retries.after;
        self.retries.matched += other.retries.matched;
        self.retries.after_failure += other.retries.after_failure;
        self.retries.latencies.extend(other.retries.latencies);
        for (status, count) in other.retries.statuses {
            *self.retries.statuses.entry(status).or_default() += count;
        }
        self.server_errors += other.server_errors;
        self.in_progress_after_answer += other.in_progress_after_answer;
        self.in_progress_concurrent += other.in_progress_concurrent;
        for (why, theirs) in other.failures {
            let ours = self.failures.entry(why).or_default();
            ours.count += theirs.count;
            let room = EXAMPLES.saturating_sub(ours.examples.len());
            ours.examples.extend(theirs.examples.into_iter().take(room));
        }
        self.failure_count += other.failure_count;
    }
}

fn status_key(answer: &Answer) -> String {
    answer.status.map_or_else(|| "transport".to_string(), |status| status.to_string())
}

/// How a retry's answer differs from what it should be: the first's status and body, marked
/// as a replay when the first took effect. Of two copies sent together either may run first,
/// so exactly one of them is the replay.
fn retry_problems(first: &Answer, when: Retry, copy: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    if copy.status != first.status {
        problems.push("another status than the first".to_string());
    } else if copy.comparable() != first.comparable() {
        problems.push("another body than the first".to_string());
    }
    let took_effect = first.status.is_some_and(|status| (200..300).contains(&status));
    if took_effect && copy.status == first.status {
        let marked = match when {
            Retry::After => copy.replayed && !first.replayed,
            Retry::Concurrent => copy.replayed != first.replayed,
        };
        if !marked {
            problems.push(format!(
                "`idempotent-replayed: true` on {} of the two answers, expected on exactly the second",
                u8::from(copy.replayed) + u8::from(first.replayed)
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, replayed: bool, body: &str) -> Answer {
        Answer { status: Some(status), replayed, body: body.into(), latency: Duration::from_millis(1) }
    }

    #[test]
    fn a_replayed_retry_matches() {
        assert!(retry_problems(&answer(201, false, "{}"), Retry::After, &answer(201, true, "{}")).is_empty());
        assert!(retry_problems(&answer(201, true, "{}"), Retry::Concurrent, &answer(201, false, "{}")).is_empty());
    }

    #[test]
    fn retries_must_replay_the_first_answer() {
        let first = answer(201, false, r#"{"id":"a"}"#);
        let conflict = answer(409, false, r#"{"error":{"code":"idempotency_in_progress"}}"#);
        assert_eq!(retry_problems(&first, Retry::After, &conflict), ["another status than the first"]);
        let other = retry_problems(&first, Retry::After, &answer(201, true, r#"{"id":"b"}"#));
        assert_eq!(other, ["another body than the first"]);
        let unmarked = retry_problems(&first, Retry::After, &answer(201, false, r#"{"id":"a"}"#));
        assert_eq!(unmarked.len(), 1, "{unmarked:?}");
    }

    #[test]
    fn in_progress_after_an_answer_is_counted_apart() {
        let request = Request::new(reqwest::Method::POST, "/v1/installs", &"t".into()).key("k");
        let conflict = answer(409, false, r#"{"error":{"code":"idempotency_in_progress"}}"#);
        let mut tally = Tally::default();
        tally.record(Kind::InstallOneTime, &request, &answer(201, false, "{}"), Some((Retry::After, &conflict)));
        tally.record(Kind::InstallOneTime, &request, &answer(500, false, "{}"), None);
        assert_eq!((tally.in_progress_after_answer, tally.in_progress_concurrent, tally.server_errors), (1, 0, 1));
        assert_eq!(tally.failure_count, 2, "{:?}", tally.failures);
        assert_eq!(tally.kinds[&Kind::InstallOneTime].latencies.len(), 1);
    }
}
