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
/// Core instances per invocation: a Rust component has about four (main module and shims),
/// Python and JavaScript ones about a dozen; the per-plugin maximum the pool allows.
pub const DEFAULT_INSTANCES: u64 = 32;
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
/// Actions one outcome may carry: a plugin asks for a handful (send, tag, notify); the
/// platform stores and runs each one.
pub const DEFAULT_ACTIONS: u64 = 1_000;
/// Distinct keys one invocation may stage (sets and deletes alike): as many as a scope may
/// hold, so a plugin can rewrite its whole store once, but staged deletes of keys that never
/// existed cannot grow host memory without bound.
pub const DEFAULT_KV_WRITES: u64 = DEFAULT_KV_KEYS;
/// Live resource handles (WASI pollables, streams) one invocation may hold at once. The
/// standard library holds a few; each costs host memory until dropped.
pub const DEFAULT_RESOURCE_HANDLES: u64 = 1_000;

/// Fuel charged for every call from the plugin into the host (capabilities and WASI), on top
/// of the plugin's own operators: about what a trivial host call costs in CPU time, measured
/// in wasm operators (a refused call takes a few hundred nanoseconds, a wasm operator well
/// under one). A loop of host calls therefore ends by the fuel limit like any other loop:
/// the default fuel pays for 200,000 calls, and a sample plugin makes fewer than ten.
pub const HOST_CALL_FUEL: u64 = 5_000;
/// Refused capability calls recorded in detail per invocation; later ones are only counted
/// (`Report::denials_dropped`), so a flood of refusals cannot grow host memory.
pub const MAX_DENIAL_RECORDS: usize = 64;
/// Longest text the host keeps from a plugin-chosen value it refuses or records (a host
/// name in a denial): longer text is clipped on a character boundary.
pub const MAX_KEPT_TEXT_BYTES: usize = 256;
/// Longest plugin error message kept; the whole message still counts against `output_bytes`.
/// Enough for a useful explanation; error messages are stored and shown as pause reasons.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2 << 10;
/// What one action costs against `output_bytes` beyond its text: its framing where it is
/// stored (JSON), so a million empty actions do not pass as zero bytes.
pub const ACTION_OVERHEAD_BYTES: u64 = 24;

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
    pub actions: u64,
    pub kv_writes: u64,
    pub resource_handles: u64,
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
            actions: DEFAULT_ACTIONS,
            kv_writes: DEFAULT_KV_WRITES,
            resource_handles: DEFAULT_RESOURCE_HANDLES,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clipping_keeps_short_text_and_cuts_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdefghij", 10), "abcdefghij");
        assert_eq!(clip("abcdefghijk", 10), "abcdefg…");
        // 'é' is two bytes: the cut never splits it.
        assert_eq!(clip("ééééé", 7), "éé…");
        assert!(clip(&"x".repeat(10_000), 256).len() <= 256);
    }
}
