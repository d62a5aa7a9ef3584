//! `nexus-loadgen market` at a small size, on SQLite and on a throwaway PostgreSQL: every
//! kind of request is sent, and every outcome check passes (the process exits 0 only then):
//! each request answered with its documented status, retries answered as their first, one
//! charge per purchase and per plan change, installs as answered, ledger verify ok, and
//! invocation rows = deliveries.

use std::process::Command;

/// The kinds of request the scenario must have sent, as the table labels them.
const KINDS: &[&str] = &[
    "install, one-time plan",
    "install, subscription",
    "plan change",
    "refund (operator)",
    "uninstall",
    "publish (publisher)",
    "event",
    "charge lookup (operator)",
];

/// The outcome checks, as the report names them.
const CHECKS: &[&str] = &[
    "documented answers",
    "no 5xx",
    "no idempotency_in_progress once answered",
    "retries answered as their first",
    "one charge per purchase",
    "installs as answered",
    "invocation rows = accepted deliveries",
    "GET /v1/ledger/verify",
];

fn market(backend: &[&str]) {
    // 8 tenants, 300 requests: about 25 rounds, every retry kind many times over; one
    // publish at the start and one every 3 s stays within the registry's publish rate.
    let output = Command::new(env!("CARGO_BIN_EXE_nexus-loadgen"))
        .args(["market", "--clients", "8", "--operations", "300", "--duration-secs", "600"])
        .args(["--publish-every-secs", "3", "--concurrent-retry-percent", "20", "--later-retry-percent", "20"])
        .args(backend)
        .output()
        .expect("running nexus-loadgen market");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\n{stdout}\n{stderr}", output.status);
    for kind in KINDS {
        let row = stdout.lines().find(|line| line.starts_with(&format!("| {kind} |")));
        let sent = row.and_then(|row| row.split('|').nth(2)).map(str::trim);
        assert!(sent.is_some_and(|sent| sent != "0"), "no {kind} requests:\n{stdout}");
    }
    for check in CHECKS {
        assert!(stdout.contains(&format!("  ok   {check}: ")), "check {check} did not pass:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn market_outcomes_are_exact_on_sqlite() {
    market(&[]);
}

#[test]
fn market_outcomes_are_exact_on_postgres() {
    market(&["--postgres"]);
}
