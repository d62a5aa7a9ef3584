//! Capabilities `config` and `secrets`: the install's settings. Secret values never enter
//! logs or reports.

use std::collections::BTreeMap;
use std::fmt;

use super::CallError;
use crate::bindings::latest::nexus::plugin::config::Host;
use crate::grants::Capability;
use crate::state::InvocationState;

/// Secret values of an install. `Debug` prints only the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FromIterator<(String, String)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Host for InvocationState {
    async fn get(&mut self, key: String) -> Result<Option<String>, CallError> {
        self.require(Capability::Config)?;
        Ok(self.context.config.get(&key).cloned())
    }

    async fn secret(&mut self, key: String) -> Result<Option<String>, CallError> {
        self.require(Capability::Secrets)?;
        Ok(self.context.secrets.get(&key).map(str::to_owned))
    }
}
