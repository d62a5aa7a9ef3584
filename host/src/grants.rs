//! What a tenant granted to one install: capabilities and outbound hosts. Everything else is
//! denied.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A capability a plugin imports and a tenant may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Config,
    Secrets,
    Kv,
    Http,
    Usage,
}

impl Capability {
    pub const ALL: [Capability; 6] = [Self::Log, Self::Config, Self::Secrets, Self::Kv, Self::Http, Self::Usage];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Config => "config",
            Self::Secrets => "secrets",
            Self::Kv => "kv",
            Self::Http => "http",
            Self::Usage => "usage",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown capability `{s}` (expected one of log, config, secrets, kv, http, usage)"))
    }
}

/// An allowed outbound host: `api.example.com`, `api.example.com:8443`, or
/// `*.example.com` (any subdomain, not the apex). Without a port, any port matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// The host part: a name, `*.domain`, or an address literal (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        }
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| format!("invalid port in allowed host `{s}`"))?;
                (host.to_string(), Some(port))
            }
            _ => (s.clone(), None),
        };
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && !name.contains('*');
        if !valid {
            return Err(format!("invalid allowed host `{s}`: expected a host name, host:port or *.domain"));
        }
        Ok(Self { host, port })
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> Self {
        pattern.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// The grants of one install. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    pub capabilities: BTreeSet<Capability>,
    pub allowed_hosts: Vec<HostPattern>,
}

impl Grants {
    /// Every capability, and the given hosts. What `nexus plugin run` grants by default.
    pub fn all(allowed_hosts: Vec<HostPattern>) -> Self {
        Self { capabilities: Capability::ALL.into_iter().collect(), allowed_hosts }
    }

    pub fn allows(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.allowed_hosts.iter().any(|p| p.matches(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn host_patterns_match_exactly_what_they_name() {
        assert!(pattern("api.example.com").matches("API.example.com", 443));
        assert!(!pattern("api.example.com").matches("evil.api.example.com", 443));
        assert!(pattern("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(!pattern("127.0.0.1:8080").matches("127.0.0.1", 8081));
        assert!(pattern("*.example.com").matches("hooks.example.com", 443));
        assert!(!pattern("*.example.com").matches("example.com", 443));
        assert!(!pattern("*.example.com").matches("badexample.com", 443));
        assert_eq!(pattern("Hooks.Example.com:99").to_string(), "hooks.example.com:99");
        assert!("exa mple.com".parse::<HostPattern>().is_err());
        assert!("a.*.com".parse::<HostPattern>().is_err());
        assert!("host:notaport".parse::<HostPattern>().is_err());
    }
}
