//! How many connections a [`Db`](super::Db) opens, from the environment.

use std::time::Duration;

use crate::error::RegistryError;

/// How many connections a [`Db`] opens and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct DbLimits {
    /// PostgreSQL: connections per node for reads and writes; SQLite: reading connections
    /// (the writer is always one). `None`: the backend's default (16 on PostgreSQL, 8
    /// readers on SQLite).
    pub connections: Option<u32>,
    /// How long a statement waits for a free connection before failing with a storage
    /// error (`storage_failure`, never a hang).
    pub acquire_timeout: Duration,
}

/// The most connections `NEXUS_DB_CONNECTIONS` may ask for: PostgreSQL's default
/// `max_connections` is 100, and each one is a file the process holds open.
pub const MAX_CONNECTIONS: u32 = 1000;

impl Default for DbLimits {
    fn default() -> Self {
        Self { connections: None, acquire_timeout: Duration::from_secs(30) }
    }
}

impl DbLimits {
    /// The defaults, overridden by `NEXUS_DB_CONNECTIONS` (1 to [`MAX_CONNECTIONS`]) and
    /// `NEXUS_DB_ACQUIRE_TIMEOUT_MS`; a value that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, RegistryError> {
        let mut limits = Self::default();
        if let Some(count) = env_number("NEXUS_DB_CONNECTIONS")? {
            let within = u32::try_from(count).ok().filter(|c| (1..=MAX_CONNECTIONS).contains(c));
            limits.connections = Some(within.ok_or_else(|| {
                RegistryError::Storage(format!(
                    "NEXUS_DB_CONNECTIONS={count}: expected a count from 1 to {MAX_CONNECTIONS}"
                ))
            })?);
        }
        if let Some(ms) = env_number("NEXUS_DB_ACQUIRE_TIMEOUT_MS")? {
            limits.acquire_timeout = Duration::from_millis(ms);
        }
        Ok(limits)
    }
}

fn env_number(name: &str) -> Result<Option<u64>, RegistryError> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RegistryError::Storage(format!("{name}={value}: expected a whole number"))),
        Err(_) => Ok(None),
    }
}
