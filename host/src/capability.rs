//! The capability imports, one module each. A call to a capability the install was not
//! granted returns `host-error.not-granted` to the plugin and is recorded as a denial; a call
//! that would exceed a limit ends the invocation with [`LimitExceeded`].

pub mod config;
pub mod http;
pub mod kv;
pub mod log;
pub mod usage;

use serde::{Deserialize, Serialize};

use crate::bindings::latest::nexus::plugin::types::{self as wit, HostError};
use crate::error::LimitExceeded;
use crate::grants::Capability;
use crate::limits::{MAX_DENIAL_RECORDS, MAX_KEPT_TEXT_BYTES, clip};
use crate::state::InvocationState;

/// The Rust side of the contract's `host-error`: either a value the plugin sees, or a trap
/// that ends the invocation (wasmtime's trappable-error pattern).
#[derive(Debug)]
pub enum CallError {
    Refused(HostError),
    Trap(wasmtime::Error),
}

impl From<LimitExceeded> for CallError {
    fn from(limit: LimitExceeded) -> Self {
        Self::Trap(wasmtime::Error::new(limit))
    }
}

impl From<HostError> for CallError {
    fn from(error: HostError) -> Self {
        Self::Refused(error)
    }
}

/// A capability call the host refused, kept in the invocation's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub capability: Capability,
    pub detail: String,
}

impl InvocationState {
    /// Checks a grant, recording a denial when it is missing.
    pub(crate) fn require(&mut self, capability: Capability) -> Result<(), CallError> {
        if self.grants().allows(capability) {
            return Ok(());
        }
        self.deny(capability, format!("capability {capability} not granted"));
        Err(CallError::Refused(HostError::NotGranted(capability.into())))
    }

    /// Records a refused call: in detail (clipped) for the first
    /// [`MAX_DENIAL_RECORDS`], counted after that.
    pub(crate) fn deny(&mut self, capability: Capability, detail: String) {
        if self.denials.len() >= MAX_DENIAL_RECORDS {
            self.denials_dropped += 1;
            return;
        }
        let detail = clip(&detail, MAX_KEPT_TEXT_BYTES);
        tracing::debug!(%capability, %detail, "capability call denied");
        self.denials.push(Denial { capability, detail });
    }
}

impl From<Capability> for wit::Capability {
    fn from(capability: Capability) -> Self {
        match capability {
            Capability::Log => Self::Log,
            Capability::Config => Self::Config,
            Capability::Secrets => Self::Secrets,
            Capability::Kv => Self::Kv,
            Capability::Http => Self::Http,
            Capability::Usage => Self::Usage,
        }
    }
}

impl wit::Host for InvocationState {
    fn convert_host_error(&mut self, error: CallError) -> wasmtime::Result<HostError> {
        match error {
            CallError::Refused(error) => Ok(error),
            CallError::Trap(trap) => Err(trap),
        }
    }
}
