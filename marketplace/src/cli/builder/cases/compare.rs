//! What differs between an invocation and what its case expects, one problem per line.
//! Only what a case names is compared.

use std::collections::BTreeMap;

use nexus_host::{Invocation, InvocationError};
use serde_json::Value;

use super::sink::Received;
use super::{Expect, ExpectedAction, ExpectedLog, ExpectedOutcome, ExpectedRequest, KvValue};
use crate::cli::output;

/// What differs between the actions a plugin asked for and the case's: the count, or else
/// the first action that is not the expected one (its position, what it was, what was
/// expected).
fn action_problem(actions: &[ExpectedAction], expected: &[ExpectedAction]) -> Option<String> {
    let shown = |a: &ExpectedAction| format!("{} {}", a.kind, a.payload);
    if actions.len() != expected.len() {
        let all: Vec<String> = actions.iter().map(shown).collect();
        return Some(format!(
            "{} action(s) [{}], expected {} action(s)",
            actions.len(),
            all.join(", "),
            expected.len()
        ));
    }
    let (n, (got, want)) = actions.iter().zip(expected).enumerate().find(|(_, (got, want))| got != want)?;
    Some(format!("action {} is {}, expected {}", n + 1, shown(got), shown(want)))
}

/// What differs in the outcome, usage, HTTP requests and logs.
pub(super) fn compare(expect: &Expect, invocation: &Invocation) -> Vec<String> {
    let mut problems = compare_outcome(expect, invocation);
    let report = &invocation.report;
    if let Some(expected) = &expect.usage
        && &report.usage != expected
    {
        problems.push(format!("usage is {:?}, expected {expected:?}", report.usage));
    }
    if let Some(expected) = expect.http_requests
        && report.http_requests != expected
    {
        problems.push(format!("made {} HTTP request(s), expected {expected}", report.http_requests));
    }
    if let Some(expected) = &expect.logs {
        let logged: Vec<ExpectedLog> =
            report.logs.iter().map(|line| ExpectedLog { level: line.level, message: line.message.clone() }).collect();
        if &logged != expected {
            let shown: Vec<String> = logged.iter().map(|l| format!("{:?} {:?}", l.level, l.message)).collect();
            problems.push(format!("logged [{}], expected {} line(s)", shown.join(", "), expected.len()));
        }
    }
    problems
}

/// Success or failure as expected; on success the data and actions, on failure the kind of
/// plugin error.
fn compare_outcome(expect: &Expect, invocation: &Invocation) -> Vec<String> {
    let mut problems = Vec::new();
    match (&invocation.result, expect.outcome) {
        (Ok(outcome), ExpectedOutcome::Ok) => {
            if let Some(expected) = &expect.data {
                let data = outcome.data.as_deref().map(serde_json::from_str::<Value>);
                match data {
                    Some(Ok(data)) if &data == expected => {}
                    Some(Ok(data)) => problems.push(format!("data is {data}, expected {expected}")),
                    Some(Err(_)) => problems.push(format!("data is not JSON: {:?}", outcome.data)),
                    None => problems.push(format!("no data, expected {expected}")),
                }
            }
            if let Some(expected) = &expect.actions {
                let actions: Vec<ExpectedAction> = outcome
                    .actions
                    .iter()
                    .map(|a| ExpectedAction {
                        kind: a.kind.clone(),
                        payload: serde_json::from_str(&a.payload).unwrap_or(Value::String(a.payload.clone())),
                    })
                    .collect();
                problems.extend(action_problem(&actions, expected));
            }
        }
        (Ok(_), ExpectedOutcome::Error) => problems.push("succeeded, expected an error".into()),
        (Err(error), ExpectedOutcome::Ok) => {
            problems.push(format!("failed, expected success: {} [{}]", error, error.code()))
        }
        (Err(error), ExpectedOutcome::Error) => {
            if let Some(expected) = expect.error_kind {
                match error {
                    InvocationError::PluginError { kind, .. } if *kind == expected => {}
                    other => problems
                        .push(format!("failed with {other} [{}], expected a {expected:?} plugin error", other.code())),
                }
            }
        }
    }
    problems
}

pub(super) fn compare_kv(expected: &BTreeMap<String, KvValue>, stored: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in expected {
        match stored.get(key) {
            None => problems.push(format!("kv {key:?} is absent, expected {}", value.0)),
            Some(bytes) if !value.matches(bytes) => {
                problems.push(format!("kv {key:?} is {:?}, expected {}", String::from_utf8_lossy(bytes), value.0))
            }
            Some(_) => {}
        }
    }
    for (key, bytes) in stored {
        if !expected.contains_key(key) {
            problems.push(format!("kv {key:?} is {:?}, expected no such key", String::from_utf8_lossy(bytes)));
        }
    }
    problems
}

pub(super) fn compare_requests(expected: &[ExpectedRequest], received: &[Received]) -> Vec<String> {
    let mut problems = Vec::new();
    if expected.len() != received.len() {
        let shown: Vec<String> = received.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        problems.push(format!(
            "the sink received {} request(s) [{}], expected {}",
            received.len(),
            shown.join(", "),
            expected.len()
        ));
        return problems;
    }
    for (n, (want, got)) in expected.iter().zip(received).enumerate() {
        let which = format!("sink request {}", n + 1);
        if !want.method.eq_ignore_ascii_case(&got.method) || want.path != got.path {
            problems.push(format!("{which} is {} {}, expected {} {}", got.method, got.path, want.method, want.path));
        }
        if let Some(body) = &want.body {
            let text = String::from_utf8_lossy(&got.body);
            let same = match body {
                Value::String(expected) => *expected == text,
                other => serde_json::from_slice::<Value>(&got.body).is_ok_and(|value| &value == other),
            };
            if !same {
                problems.push(format!("{which} body is {}, expected {body}", output::shown(&text)));
            }
        }
        for (name, value) in &want.headers {
            match got.headers.get(&name.to_ascii_lowercase()) {
                Some(actual) if actual == value => {}
                Some(actual) => problems.push(format!("{which} header {name} is {actual:?}, expected {value:?}")),
                None => problems.push(format!("{which} has no header {name}, expected {value:?}")),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: &str, payload: Value) -> ExpectedAction {
        ExpectedAction { kind: kind.into(), payload }
    }

    #[test]
    fn an_action_that_differs_is_named_by_position_and_content() {
        let expected = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "vip".into())];
        let same = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "vip".into())];
        assert_eq!(action_problem(&same, &expected), None);
        let other = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "new".into())];
        assert_eq!(
            action_problem(&other, &expected).as_deref(),
            Some(r#"action 2 is crm.tag "new", expected crm.tag "vip""#)
        );
        assert_eq!(
            action_problem(&other[..1], &expected).as_deref(),
            Some(r#"1 action(s) [crm.note {"text":"hi"}], expected 2 action(s)"#)
        );
    }
}
