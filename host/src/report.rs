//! What each invocation reports, and the host-wide counters a server exports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::capability::Denial;
use crate::capability::log::LogLine;
use crate::contract::ContractVersion;
use crate::digest::Digest;
use crate::error::InvocationError;
use crate::runtime::LoadSource;
use crate::types::Outcome;

/// The resource figures and captured output of one invocation, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub digest: Digest,
    pub contract: ContractVersion,
    /// `ok` or the [`InvocationError::code`].
    pub outcome: String,
    pub duration_us: u64,
    pub fuel_used: u64,
    pub peak_memory_bytes: u64,
    pub logs: Vec<LogLine>,
    /// What the guest wrote to stdout and stderr (bounded; panic messages appear here).
    pub stdout: String,
    pub stderr: String,
    /// Units reported per meter.
    pub usage: BTreeMap<String, u64>,
    pub http_requests: u64,
    /// KV writes committed (0 when the invocation failed: staged writes are dropped).
    pub kv_writes: u64,
    /// The first [`crate::limits::MAX_DENIAL_RECORDS`] refused calls.
    pub denials: Vec<Denial>,
    /// Refused calls past those, counted only.
    #[serde(default)]
    pub denials_dropped: u64,
}

impl Report {
    /// Every capability call the host refused, recorded or not.
    pub fn denied_calls(&self) -> u64 {
        self.denials.len() as u64 + self.denials_dropped
    }
}

/// The result of [`crate::Host::invoke`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub result: Result<Outcome, InvocationError>,
    pub report: Report,
}

/// Monotonic counters since the host started.
#[derive(Debug, Default)]
pub struct Metrics {
    loads_memory: AtomicU64,
    loads_disk: AtomicU64,
    compiles: AtomicU64,
    invocations: [AtomicU64; OUTCOMES.len()],
    fuel_used: AtomicU64,
    duration_us: AtomicU64,
}

/// Outcome labels, in the order of `Metrics::invocations`.
pub const OUTCOMES: [&str; 8] =
    ["ok", "plugin_error", "limit_exceeded", "panicked", "trapped", "host_failure", "kv_conflict", "busy"];

/// A copy of the counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub loads_memory: u64,
    pub loads_disk: u64,
    pub compiles: u64,
    /// Invocations per outcome label.
    pub invocations: BTreeMap<String, u64>,
    pub fuel_used: u64,
    pub duration_us: u64,
}

impl Metrics {
    pub(crate) fn record_load(&self, source: LoadSource) {
        let counter = match source {
            LoadSource::Memory => &self.loads_memory,
            LoadSource::Disk => &self.loads_disk,
            LoadSource::Compiled => &self.compiles,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_invocation(&self, report: &Report) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == report.outcome) {
            self.invocations[i].fetch_add(1, Ordering::Relaxed);
        }
        self.fuel_used.fetch_add(report.fuel_used, Ordering::Relaxed);
        self.duration_us.fetch_add(report.duration_us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            loads_memory: get(&self.loads_memory),
            loads_disk: get(&self.loads_disk),
            compiles: get(&self.compiles),
            invocations: OUTCOMES.iter().zip(&self.invocations).map(|(o, c)| (o.to_string(), get(c))).collect(),
            fuel_used: get(&self.fuel_used),
            duration_us: get(&self.duration_us),
        }
    }
}

pub(crate) fn outcome_label(result: &Result<Outcome, InvocationError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => error.code().into(),
    }
}
