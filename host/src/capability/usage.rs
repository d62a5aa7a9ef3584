//! Capability `usage`: billable units reported by the plugin, summed per meter.

use super::CallError;
use crate::bindings::latest::nexus::plugin::types::HostError;
use crate::bindings::latest::nexus::plugin::usage::Host;
use crate::error::{Limit, LimitExceeded};
use crate::grants::Capability;
use crate::state::InvocationState;

/// Longest meter name.
const MAX_METER_LEN: usize = 64;

/// Meter names are what pricing plans refer to: lowercase, digits and `-`, 1 to 64 long.
pub fn valid_meter(name: &str) -> bool {
    (1..=MAX_METER_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl Host for InvocationState {
    async fn report(&mut self, meter: String, units: u64) -> Result<(), CallError> {
        self.require(Capability::Usage)?;
        if !valid_meter(&meter) {
            return Err(HostError::InvalidArgument(format!("invalid meter name `{meter}`")).into());
        }
        let max = self.limits().usage_meters;
        if !self.usage.contains_key(&meter) && self.usage.len() as u64 >= max {
            return Err(LimitExceeded { limit: Limit::UsageMeters, used: max + 1, max }.into());
        }
        let total = self.usage.entry(meter).or_insert(0);
        *total = total.saturating_add(units);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::valid_meter;

    #[test]
    fn meter_names() {
        assert!(valid_meter("messages-sent"));
        assert!(valid_meter("sms2"));
        assert!(!valid_meter(""));
        assert!(!valid_meter("Messages"));
        assert!(!valid_meter("-x"));
        assert!(!valid_meter("a b"));
        assert!(!valid_meter(&"a".repeat(65)));
    }
}
