//! Capability `log`: lines captured per invocation, bounded in count and bytes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CallError;
use crate::bindings::latest::nexus::plugin::log::{Host, Level as WitLevel};
use crate::error::{Limit, LimitExceeded};
use crate::grants::Capability;
use crate::state::InvocationState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<WitLevel> for Level {
    fn from(level: WitLevel) -> Self {
        match level {
            WitLevel::Trace => Self::Trace,
            WitLevel::Debug => Self::Debug,
            WitLevel::Info => Self::Info,
            WitLevel::Warn => Self::Warn,
            WitLevel::Error => Self::Error,
        }
    }
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Time since the invocation started.
    #[serde(rename = "at_us")]
    pub at_micros: u64,
    pub level: Level,
    pub message: String,
}

/// The lines of one invocation and what they cost against the limits.
#[derive(Debug, Default)]
pub struct LogBuffer {
    pub lines: Vec<LogLine>,
    bytes: u64,
}

impl LogBuffer {
    fn push(&mut self, line: LogLine, max_lines: u64, max_bytes: u64) -> Result<(), LimitExceeded> {
        let lines = self.lines.len() as u64 + 1;
        if lines > max_lines {
            return Err(LimitExceeded { limit: Limit::LogLines, used: lines, max: max_lines });
        }
        let bytes = self.bytes + line.message.len() as u64;
        if bytes > max_bytes {
            return Err(LimitExceeded { limit: Limit::LogBytes, used: bytes, max: max_bytes });
        }
        self.bytes = bytes;
        self.lines.push(line);
        Ok(())
    }
}

impl Host for InvocationState {
    async fn write(&mut self, level: WitLevel, message: String) -> Result<(), CallError> {
        self.require(Capability::Log)?;
        let at = self.elapsed();
        let line = LogLine { at_micros: micros(at), level: level.into(), message };
        let (max_lines, max_bytes) = (self.limits().log_lines, self.limits().log_bytes);
        self.log.push(line, max_lines, max_bytes)?;
        Ok(())
    }

    async fn enabled(&mut self, _level: WitLevel) -> wasmtime::Result<bool> {
        // Every level is kept when logging is granted; filtering happens when lines are shown.
        Ok(self.grants().allows(Capability::Log))
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine { at_micros: 0, level: Level::Info, message: message.into() }
    }

    #[test]
    fn buffer_stops_at_the_line_and_byte_limits() {
        let mut buffer = LogBuffer::default();
        assert_eq!(buffer.push(line("12345"), 2, 8), Ok(()));
        assert_eq!(buffer.push(line("6789"), 2, 8), Err(LimitExceeded { limit: Limit::LogBytes, used: 9, max: 8 }));
        assert_eq!(buffer.push(line("678"), 2, 8), Ok(()));
        assert_eq!(buffer.push(line(""), 2, 8), Err(LimitExceeded { limit: Limit::LogLines, used: 3, max: 2 }));
        assert_eq!(buffer.lines.len(), 2);
    }
}
