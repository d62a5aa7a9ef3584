//! How a market run is printed on stdout: what ran, a table per kind of request (requests,
//! retries, answers by status, throughput, p50/p99/max of the documented answers), the CPU
//! each party used, then each outcome check and every failure word for word.

use std::collections::BTreeMap;
use std::time::Duration;

use super::checks::Check;
use super::tally::Tally;
use crate::report::{millis, percentile};

/// Failures of one check printed word for word; the rest are counted.
const PRINTED_PER_CHECK: usize = 20;

pub struct Figures {
    pub backend: String,
    pub clients: u32,
    /// First sends per second in all when paced (`--rate`); `None`: as fast as answered.
    pub rate: Option<u32>,
    pub events: u32,
    /// Until the last client stopped.
    pub window: Duration,
    pub stopped_by: String,
    pub tally: Tally,
    /// Average cores busy in the window: the server, the load generator, everything else.
    pub cores: Option<[f64; 3]>,
}

pub fn print(figures: &mut Figures, checks: &[Check]) {
    let build = if cfg!(debug_assertions) { "DEBUG build, not for figures" } else { "release build" };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "nexus-loadgen market: {} tenants' clients and one publisher, {} backend, {build}",
        figures.clients, figures.backend
    );
    println!(
        "note: the load generator and the server share this machine's {cores} cores; the CPU line says who used what"
    );
    if figures.backend.starts_with("PostgreSQL (throwaway") {
        println!(
            "note: the throwaway cluster runs with fsync=off, synchronous_commit=off; SQLite's commits reach the disk \
             (one fsync shared by the commits waiting)"
        );
    }
    match figures.rate {
        Some(rate) => println!(
            "paced: {rate} first sends/s in all, each client on its own schedule; latency counted from the scheduled \
             moment"
        ),
        None => println!("unpaced: each client sends its next request as soon as the last is answered"),
    }
    println!(
        "each round: buy echo one-time and pii-redactor monthly, {} events, change plan (and back every other round), \
         the operator refunds, {} events, uninstall both",
        figures.events, figures.events
    );
    println!("window: {:.1} s, stopped by {}", figures.window.as_secs_f64(), figures.stopped_by);
    println!();
    table(&mut figures.tally, figures.window);
    if let Some([server, loadgen, others]) = figures.cores {
        println!();
        println!("CPU (window): server {server:.2} cores, loadgen {loadgen:.2}, everything else {others:.2}");
    }
    println!();
    println!("outcome checks:");
    for check in checks {
        let mark = if check.passed() { "ok  " } else { "FAIL" };
        println!("  {mark} {}: {}", check.name, check.summary);
        for failure in check.failures.iter().take(PRINTED_PER_CHECK) {
            println!("         - {failure}");
        }
        if check.failures.len() > PRINTED_PER_CHECK {
            println!("         - … and {} more", thousands((check.failures.len() - PRINTED_PER_CHECK) as u64));
        }
    }
    failures(&figures.tally);
}

/// The per-kind table, in Markdown so it can go into BENCHMARKS.md as it is.
fn table(tally: &mut Tally, window: Duration) {
    let seconds = window.as_secs_f64().max(f64::EPSILON);
    println!("| request | sent | retried | answers | documented /s | p50 | p99 | max |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let (mut sent, mut documented) = (0, 0);
    for (kind, row) in &mut tally.kinds {
        row.latencies.sort_unstable();
        sent += row.requests;
        documented += row.latencies.len() as u64;
        println!(
            "| {} | {} | {} | {} | {:.1} | {} |",
            kind.label(),
            thousands(row.requests),
            thousands(row.retried),
            statuses(&row.statuses),
            row.latencies.len() as f64 / seconds,
            latency(&row.latencies)
        );
    }
    let retries = &mut tally.retries;
    retries.latencies.sort_unstable();
    println!(
        "| retries (same key) | {} | – | {} | {:.1} | {} |",
        thousands(retries.concurrent + retries.after),
        statuses(&retries.statuses),
        (retries.concurrent + retries.after) as f64 / seconds,
        latency(&retries.latencies)
    );
    println!(
        "| **all first sends** | {} | | {} documented | {:.1} | | | |",
        thousands(sent),
        thousands(documented),
        documented as f64 / seconds
    );
}

/// Each kind of failure, most frequent first, with its first answers word for word.
fn failures(tally: &Tally) {
    if tally.failures.is_empty() {
        return;
    }
    println!();
    println!(
        "answers not as documented: {} in all, of {} kinds:",
        thousands(tally.failure_count),
        tally.failures.len()
    );
    let mut kinds: Vec<_> = tally.failures.iter().collect();
    kinds.sort_by_key(|(why, failures)| (std::cmp::Reverse(failures.count), *why));
    for (why, failures) in kinds {
        println!("  {} × {why}", thousands(failures.count));
        for example in &failures.examples {
            println!("      e.g. {example}");
        }
    }
}

/// `201 × 1,203, 500 × 2`.
fn statuses(statuses: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> =
        statuses.iter().map(|(status, count)| format!("{status} × {}", thousands(*count))).collect();
    if parts.is_empty() { "–".into() } else { parts.join(", ") }
}

/// `p50 | p99 | max` cells of sorted latencies.
fn latency(sorted: &[Duration]) -> String {
    let Some(max) = sorted.last() else { return "– | – | –".into() };
    format!("{} | {} | {}", millis(percentile(sorted, 0.50)), millis(percentile(sorted, 0.99)), millis(*max))
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(
            [thousands(0), thousands(999), thousands(1000), thousands(1_234_567)],
            ["0", "999", "1,000", "1,234,567"]
        );
    }

    #[test]
    fn statuses_read_as_counts() {
        let counted = BTreeMap::from([("201".to_string(), 1203), ("500".to_string(), 2)]);
        assert_eq!(statuses(&counted), "201 × 1,203, 500 × 2");
        assert_eq!(statuses(&BTreeMap::new()), "–");
    }
}
