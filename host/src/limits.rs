//! Per-invocation limits and their defaults. Every limit ends only the invocation that
//! exceeds it, with [`crate::LimitExceeded`] naming the limit and the numbers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Fuel per invocation. One unit is one wasm operator (register moves included), so 1e9 is
/// about 50 ms of a tight loop on this machine and 20,000 times what the sample plugins use
/// for one event (under 50,000). Unlike time, it bounds a runaway loop deterministically
/// whatever the machine's load.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Linear memory per invocation: room for a few MiB of JSON with serde's overhead.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Table elements per table: Rust guests use a few hundred for indirect calls.
pub const DEFAULT_TABLE_ELEMENTS: u64 = 20_000;
/// Core instances per invocation: a Rust component has about four (main module and shims).
pub const DEFAULT_INSTANCES: u64 = 16;
/// Wall-clock time per invocation, including time spent waiting on outbound HTTP.
pub const DEFAULT_WALL_CLOCK: Duration = Duration::from_secs(10);
/// Event payload size: webhooks of the platforms we integrate with stay far below 1 MiB.
pub const DEFAULT_INPUT_BYTES: u64 = 1 << 20;
/// Outcome data plus actions: the platform stores it per invocation.
pub const DEFAULT_OUTPUT_BYTES: u64 = 1 << 20;
/// Log lines per invocation, and their total size: enough to debug, small enough to keep
/// every invocation's log.
pub const DEFAULT_LOG_LINES: u64 = 1_000;
pub const DEFAULT_LOG_BYTES: u64 = 64 << 10;
/// KV quota per (tenant, install): total bytes of keys and values, number of keys, and
/// the largest single value.
pub const DEFAULT_KV_BYTES: u64 = 1 << 20;
pub const DEFAULT_KV_KEYS: u64 = 10_000;
pub const DEFAULT_KV_VALUE_BYTES: u64 = 256 << 10;
/// Longest KV key, in bytes.
pub const MAX_KV_KEY_BYTES: usize = 512;
/// Outbound HTTP per invocation: a notifier sends one or two requests.
pub const DEFAULT_HTTP_REQUESTS: u64 = 10;
pub const DEFAULT_HTTP_REQUEST_BYTES: u64 = 1 << 20;
pub const DEFAULT_HTTP_RESPONSE_BYTES: u64 = 4 << 20;
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Distinct usage meters one invocation may report.
pub const DEFAULT_USAGE_METERS: u64 = 16;

/// The limits of one invocation. Tenants' plans may lower them; the engine's pool bounds
/// how high memory and instances can go ([`crate::HostConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub instances: u64,
    #[serde(with = "millis")]
    pub wall_clock: Duration,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub log_lines: u64,
    pub log_bytes: u64,
    pub kv_bytes: u64,
    pub kv_keys: u64,
    pub kv_value_bytes: u64,
    pub http_requests: u64,
    pub http_request_bytes: u64,
    pub http_response_bytes: u64,
    #[serde(with = "millis")]
    pub http_timeout: Duration,
    pub usage_meters: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            instances: DEFAULT_INSTANCES,
            wall_clock: DEFAULT_WALL_CLOCK,
            input_bytes: DEFAULT_INPUT_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            log_lines: DEFAULT_LOG_LINES,
            log_bytes: DEFAULT_LOG_BYTES,
            kv_bytes: DEFAULT_KV_BYTES,
            kv_keys: DEFAULT_KV_KEYS,
            kv_value_bytes: DEFAULT_KV_VALUE_BYTES,
            http_requests: DEFAULT_HTTP_REQUESTS,
            http_request_bytes: DEFAULT_HTTP_REQUEST_BYTES,
            http_response_bytes: DEFAULT_HTTP_RESPONSE_BYTES,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            usage_meters: DEFAULT_USAGE_METERS,
        }
    }
}

/// Durations travel as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}
