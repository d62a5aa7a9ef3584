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
    /// Bytes of the successful answers' bodies in the measured window (their mean shows
    /// that the bare comparator answers as much as the real route).
    pub answer_bytes: u64,
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
            self.answer_bytes += answer.len() as u64;
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
        self.answer_bytes += other.answer_bytes;
    }
}

/// The measured window, from its opening until the last request answered (or several
/// such windows together).
#[derive(Debug, Default, Clone)]
pub struct Window {
    pub length: Duration,
    /// The largest `VmRSS` sampled.
    pub peak_rss_kib: u64,
    pub memory_samples: usize,
    /// Average cores busy: the server, the load generator, everything else.
    pub cores: [f64; 3],
    /// 2xx answers per second.
    pub rate: f64,
}

impl Window {
    /// Several windows as one: lengths and samples add up, the peak is the largest, cores
    /// and rate are averaged by length.
    pub fn combined(windows: &[Window]) -> Window {
        let length: Duration = windows.iter().map(|w| w.length).sum();
        let seconds = length.as_secs_f64().max(f64::MIN_POSITIVE);
        let weighted = |figure: &dyn Fn(&Window) -> f64| {
            windows.iter().map(|w| figure(w) * w.length.as_secs_f64()).sum::<f64>() / seconds
        };
        Window {
            length,
            peak_rss_kib: windows.iter().map(|w| w.peak_rss_kib).max().unwrap_or(0),
            memory_samples: windows.iter().map(|w| w.memory_samples).sum(),
            cores: [0, 1, 2].map(|i| weighted(&|w: &Window| w.cores[i])),
            rate: weighted(&|w: &Window| w.rate),
        }
    }
}

#[derive(Debug)]
pub struct Report {
    /// What was driven.
    pub subject: &'static str,
    pub backend: &'static str,
    pub concurrency: u32,
    pub warmup: Duration,
    pub window: Window,
    /// 2xx answers per second of each measured window, in order.
    pub rates: Vec<f64>,
    pub tally: Tally,
    pub memory_before: Memory,
    pub memory_after: Memory,
    /// The invocation rows the real server recorded; `None` for the bare comparator.
    pub invocation_rows: Option<u64>,
}

impl Report {
    pub fn print(mut self) -> Self {
        self.tally.latencies.sort_unstable();
        self.print_setup();
        self.print_outcomes();
        self.print_resources();
        self
    }

    /// What ran, on what build and machine, with how many connections for how long.
    fn print_setup(&self) {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let build = if cfg!(debug_assertions) { "DEBUG build, not for figures" } else { "release build" };
        match self.invocation_rows {
            Some(_) => println!("nexus-loadgen: {}, {} backend, {build}", self.subject, self.backend),
            None => println!("nexus-loadgen: {}, {build}", self.subject),
        }
        println!(
            "note: the load generator and the server share this machine's {cores} cores; the CPU line says who used what"
        );
        if self.backend == "PostgreSQL" && self.invocation_rows.is_some() {
            println!(
                "note: the throwaway cluster runs with fsync=off, synchronous_commit=off; SQLite commits with fsync"
            );
        }
        println!("concurrency      {} keep-alive connections, one request in flight each", self.concurrency);
        println!(
            "window           {:.2} s after {} s warm-up{}",
            self.window.length.as_secs_f64(),
            self.warmup.as_secs(),
            match self.rates.len() {
                0 | 1 => String::new(),
                windows => format!(", in {windows} windows alternating with the other server"),
            }
        );
    }

    /// What was sent and answered: by status, the first answer of each failure, throughput,
    /// answer size and latency percentiles (latencies sorted).
    fn print_outcomes(&self) {
        let tally = &self.tally;
        let sent: u64 = tally.outcomes.values().sum();
        let ok = tally.latencies.len() as u64;
        println!("events sent      {sent} in the window ({} more in warm-up)", tally.warmup_requests);
        let outcomes: Vec<String> = tally.outcomes.iter().map(|(key, count)| format!("{key}: {count}")).collect();
        println!("by status        {}", outcomes.join(", "));
        if tally.first_failures.is_empty() {
            println!("errors           none");
        }
        for (key, evidence) in &tally.first_failures {
            println!("errors {key:<9} {} (first answer: {evidence})", tally.outcomes.get(key).copied().unwrap_or(0));
        }
        println!("throughput       {:.0} events/s (2xx answers / window)", self.throughput());
        if self.rates.len() > 1 {
            let rates: Vec<String> = self.rates.iter().map(|rate| format!("{rate:.0}")).collect();
            println!("by window        {} /s", rates.join(", "));
        }
        println!("answer size      {:.0} bytes of body on average (2xx)", tally.answer_bytes as f64 / ok.max(1) as f64);
        if let Some(max) = tally.latencies.last() {
            let [p50, p90, p99] = [0.50, 0.90, 0.99].map(|q| millis(percentile(&tally.latencies, q)));
            println!("latency (2xx)    p50 {p50}  p90 {p90}  p99 {p99}  max {}", millis(*max));
        }
    }

    /// The server's memory and the cores each party used, and the invocation-row check.
    fn print_resources(&self) {
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
        if let Some(rows) = self.invocation_rows {
            let verdict = if rows == self.tally.accepted { "equal" } else { "MISMATCH" };
            println!(
                "invocation rows  {rows} recorded, {} events accepted (warm-up included): {verdict}",
                self.tally.accepted
            );
        }
    }

    /// 2xx answers per second of the whole measured time.
    pub fn throughput(&self) -> f64 {
        self.tally.latencies.len() as f64 / self.window.length.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Every accepted event must have left one invocation row, and none other.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(rows) = self.invocation_rows {
            anyhow::ensure!(
                rows == self.tally.accepted,
                "{rows} invocation rows for {} accepted events",
                self.tally.accepted
            );
        }
        Ok(())
    }
}

/// The line `run --vs-bare` exists for: the real route's throughput as a share of the bare
/// comparator's, both measured in this run.
pub fn print_ratio(real: &Report, bare: &Report) {
    let ratio = real.throughput() / bare.throughput().max(f64::MIN_POSITIVE);
    let p50 = |report: &Report| millis(percentile(&report.tally.latencies, 0.5));
    println!(
        "ratio            real {:.0} events/s / bare {:.0} req/s = {:.1} % (p50 {} vs {}; server CPU {:.2} vs {:.2} cores)",
        real.throughput(),
        bare.throughput(),
        ratio * 100.0,
        p50(real),
        p50(bare),
        real.window.cores[0],
        bare.window.cores[0],
    );
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
    fn windows_combine_weighted_by_length() {
        let window = |seconds, rate, server| Window {
            length: Duration::from_secs(seconds),
            peak_rss_kib: seconds * 10,
            memory_samples: 4,
            cores: [server, 0.5, 0.0],
            rate,
        };
        let combined = Window::combined(&[window(1, 100.0, 1.0), window(3, 200.0, 2.0)]);
        assert_eq!((combined.length, combined.peak_rss_kib, combined.memory_samples), (Duration::from_secs(4), 30, 8));
        assert_eq!((combined.rate, combined.cores), (175.0, [1.75, 0.5, 0.0]));
        assert_eq!(Window::combined(&[]).rate, 0.0);
    }

    #[test]
    fn warmup_counts_only_towards_accepted() {
        let mut tally = Tally::default();
        tally.record(false, Ok(reqwest::StatusCode::OK), b"{}", Duration::from_millis(1));
        tally.record(true, Ok(reqwest::StatusCode::OK), b"{}", Duration::from_millis(2));
        tally.record(true, Ok(reqwest::StatusCode::INTERNAL_SERVER_ERROR), b"{\"error\":1}", Duration::ZERO);
        tally.record(true, Ok(reqwest::StatusCode::INTERNAL_SERVER_ERROR), b"second", Duration::ZERO);
        assert_eq!((tally.accepted, tally.warmup_requests, tally.latencies.len()), (2, 1, 1));
        assert_eq!(tally.answer_bytes, 2);
        assert_eq!(tally.outcomes.get("500"), Some(&2));
        assert_eq!(tally.first_failures.get("500").map(String::as_str), Some("{\"error\":1}"));
    }
}
