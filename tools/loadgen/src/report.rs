//! What a run measured and how it is printed: outcomes by status, throughput, latency
//! percentiles, the server's memory, and the invocation-row check.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::procfs::Memory;

/// Answer bodies kept as evidence are cut to this many characters.
const SAMPLE_CHARS: usize = 300;

/// One worker's (or, merged, all workers') results.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latencies of the successful requests started in the measured window.
    pub latencies: Vec<Duration>,
    /// Requests started in the measured window, by HTTP status or `transport`.
    pub outcomes: BTreeMap<String, u64>,
    /// The first answer of each failing outcome, as evidence.
    pub first_failures: BTreeMap<String, String>,
    /// Successful answers over the whole run, warm-up included: each should have left
    /// exactly one invocation row.
    pub accepted: u64,
    /// Requests started during warm-up.
    pub warmup_requests: u64,
}

impl Tally {
    pub fn record(
        &mut self,
        measured: bool,
        outcome: Result<reqwest::StatusCode, reqwest::Error>,
        answer: &[u8],
        latency: Duration,
    ) {
        let success = outcome.as_ref().is_ok_and(|status| status.is_success());
        self.accepted += u64::from(success);
        if !measured {
            self.warmup_requests += 1;
            return;
        }
        let key = match &outcome {
            Ok(status) => status.as_u16().to_string(),
            Err(_) => "transport".to_string(),
        };
        if success {
            self.latencies.push(latency);
        } else if !self.first_failures.contains_key(&key) {
            let evidence = match &outcome {
                Ok(_) => String::from_utf8_lossy(answer).chars().take(SAMPLE_CHARS).collect(),
                Err(error) => format!("{error:#}"),
            };
            self.first_failures.insert(key.clone(), evidence);
        }
        *self.outcomes.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (key, count) in other.outcomes {
            *self.outcomes.entry(key).or_default() += count;
        }
        for (key, evidence) in other.first_failures {
            self.first_failures.entry(key).or_insert(evidence);
        }
        self.accepted += other.accepted;
        self.warmup_requests += other.warmup_requests;
    }
}

/// The measured window, from its opening until the last request answered.
#[derive(Debug)]
pub struct Window {
    pub length: Duration,
    /// The largest `VmRSS` sampled.
    pub peak_rss_kib: u64,
    pub memory_samples: usize,
    /// Average cores busy: the server, the load generator, everything else.
    pub cores: [f64; 3],
}

#[derive(Debug)]
pub struct Report {
    pub backend: &'static str,
    pub concurrency: u32,
    pub warmup: Duration,
    pub window: Window,
    pub tally: Tally,
    pub memory_before: Memory,
    pub memory_after: Memory,
    pub invocation_rows: u64,
}

impl Report {
    pub fn print(mut self) -> Self {
        self.tally.latencies.sort_unstable();
        let tally = &self.tally;
        let sent: u64 = tally.outcomes.values().sum();
        let ok = tally.latencies.len() as u64;
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let build = if cfg!(debug_assertions) { "DEBUG build, not for figures" } else { "release build" };
        println!("nexus-loadgen: POST /v1/events -> 1 echo install, {} backend, {build}", self.backend);
        println!(
            "note: the load generator and the server share this machine's {cores} cores; the CPU line says who used what"
        );
        if self.backend == "PostgreSQL" {
            println!(
                "note: the throwaway cluster runs with fsync=off, synchronous_commit=off; SQLite commits with fsync"
            );
        }
        println!("concurrency      {} keep-alive connections, one request in flight each", self.concurrency);
        println!(
            "window           {:.2} s after {} s warm-up",
            self.window.length.as_secs_f64(),
            self.warmup.as_secs()
        );
        println!("events sent      {sent} in the window ({} more in warm-up)", tally.warmup_requests);
        let outcomes: Vec<String> = tally.outcomes.iter().map(|(key, count)| format!("{key}: {count}")).collect();
        println!("by status        {}", outcomes.join(", "));
        if tally.first_failures.is_empty() {
            println!("errors           none");
        }
        for (key, evidence) in &tally.first_failures {
            println!("errors {key:<9} {} (first answer: {evidence})", tally.outcomes.get(key).copied().unwrap_or(0));
        }
        println!(
            "throughput       {:.0} events/s (2xx answers / window)",
            ok as f64 / self.window.length.as_secs_f64()
        );
        if let Some(max) = tally.latencies.last() {
            let [p50, p90, p99] = [0.50, 0.90, 0.99].map(|q| millis(percentile(&tally.latencies, q)));
            println!("latency (2xx)    p50 {p50}  p90 {p90}  p99 {p99}  max {}", millis(*max));
        }
        println!(
            "server RSS       before {}  peak {} (VmRSS every 250 ms, {} samples; VmHWM {})  after {}",
            mib(self.memory_before.rss_kib),
            mib(self.window.peak_rss_kib),
            self.window.memory_samples,
            mib(self.memory_after.hwm_kib),
            mib(self.memory_after.rss_kib),
        );
        let [server, loadgen, others] = self.window.cores;
        println!(
            "CPU (window)     server {server:.2} cores, loadgen {loadgen:.2}, everything else {others:.2}{}",
            if self.backend == "PostgreSQL" { " (PostgreSQL included)" } else { "" }
        );
        let verdict = if self.invocation_rows == tally.accepted { "equal" } else { "MISMATCH" };
        println!(
            "invocation rows  {} recorded, {} events accepted (warm-up included): {verdict}",
            self.invocation_rows, tally.accepted
        );
        self
    }

    /// Every accepted event must have left one invocation row, and none other.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.invocation_rows == self.tally.accepted,
            "{} invocation rows for {} accepted events",
            self.invocation_rows,
            self.tally.accepted
        );
        Ok(())
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&values, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[Duration::from_millis(7)], 0.9), Duration::from_millis(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn warmup_counts_only_towards_accepted() {
        let mut tally = Tally::default();
        tally.record(false, Ok(reqwest::StatusCode::OK), b"{}", Duration::from_millis(1));
        tally.record(true, Ok(reqwest::StatusCode::OK), b"{}", Duration::from_millis(2));
        tally.record(true, Ok(reqwest::StatusCode::INTERNAL_SERVER_ERROR), b"{\"error\":1}", Duration::ZERO);
        tally.record(true, Ok(reqwest::StatusCode::INTERNAL_SERVER_ERROR), b"second", Duration::ZERO);
        assert_eq!((tally.accepted, tally.warmup_requests, tally.latencies.len()), (2, 1, 1));
        assert_eq!(tally.outcomes.get("500"), Some(&2));
        assert_eq!(tally.first_failures.get("500").map(String::as_str), Some("{\"error\":1}"));
    }
}
