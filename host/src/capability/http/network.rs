//! Which addresses outbound HTTP may reach. By default only public ones: never loopback,
//! private, link-local, unique-local, shared (CGNAT), multicast, documentation or
//! metadata addresses, so a plugin cannot reach the services next to the marketplace or
//! a cloud metadata endpoint. The check is on the address actually connected to: names are
//! resolved here and only the permitted addresses are handed to the connector, so a name
//! that resolves to 127.0.0.1 is refused, and a rebinding name cannot change between the
//! check and the connect.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Ranges outbound HTTP never connects to unless the operator allows them.
const INTERNAL_RANGES: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared address space (CGNAT; some clouds' metadata)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast
    "::/128",          // unspecified
    "::1/128",         // loopback
    "100::/64",        // discard
    "2001::/23",       // IETF protocol assignments (Teredo and others)
    "2001:db8::/32",   // documentation
    "fc00::/7",        // unique local (fd00:ec2::254 is a metadata address)
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated)
    "ff00::/8",        // multicast
];

static INTERNAL: LazyLock<Vec<IpNet>> =
    LazyLock::new(|| INTERNAL_RANGES.iter().filter_map(|range| range.parse().ok()).collect());

/// Whether `ip` is an internal address. IPv4 embedded in IPv6 (mapped, NAT64, 6to4) is
/// judged by its IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    let ip = embedded_v4(ip).map_or(ip, IpAddr::V4);
    INTERNAL.iter().any(|range| range.contains(&ip))
}

fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// The operator's outbound policy: internal addresses are refused unless a range here
/// allows them (`nexus serve --allow-private-network 10.1.0.0/16`; `nexus plugin run`
/// allows loopback and private networks for local testing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Public addresses, and the internal ones in `ranges`.
    pub fn allowing(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self { allowed: ranges.into_iter().collect() }
    }

    /// Loopback and private networks as well as public ones: for running plugins on a
    /// builder's own machine against local test servers.
    pub fn local_testing() -> Self {
        let ranges = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];
        Self::allowing(ranges.iter().filter_map(|range| range.parse().ok()))
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|range| range.contains(&ip) || range.contains(&canonical(ip)))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    embedded_v4(ip).map_or(ip, IpAddr::V4)
}

/// The resolver outbound HTTP connects through: every address a name resolves to is checked
/// against the policy, and only permitted ones reach the connector.
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: OutboundPolicy,
}

/// A name resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to {ip}, an internal address outbound HTTP may not reach")]
pub(crate) struct Blocked {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let name = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found.iter().copied().filter(|addr| policy.permits(addr.ip())).collect();
            match (permitted.is_empty(), found.first()) {
                (true, Some(refused)) => Err(Box::new(Blocked { name, ip: refused.ip() }) as _),
                _ => Ok(Box::new(permitted.into_iter()) as Addrs),
            }
        })
    }
}

pub(crate) fn resolver(policy: &OutboundPolicy) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { policy: policy.clone() })
}

/// The IP of a URL host written as an address literal (no name to resolve).
pub(crate) fn literal(host: &url::Host<&str>) -> Option<IpAddr> {
    match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    }
}

/// Whether an allowed-host entry names an internal destination a hosted marketplace will
/// refuse: an internal address literal, or a name reserved for local networks.
pub fn names_internal_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_internal(ip);
    }
    let host = host.trim_start_matches("*.").trim_end_matches('.');
    host == "localhost"
        || [".localhost", ".local", ".internal", ".localdomain", ".home.arpa"].iter().any(|s| host.ends_with(s))
        || matches!(host, "internal" | "local" | "metadata")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_internal_range_parses() {
        assert_eq!(INTERNAL.len(), INTERNAL_RANGES.len());
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_permitted() {
        let policy = OutboundPolicy::default();
        for internal in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.5",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
        ] {
            assert!(!policy.permits(ip(internal)), "{internal} must be refused");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "172.32.0.1"] {
            assert!(policy.permits(ip(public)), "{public} must be permitted");
        }
    }

    #[test]
    fn the_operator_can_allow_a_range() {
        let policy = OutboundPolicy::allowing(["10.1.0.0/16".parse().expect("cidr")]);
        assert!(policy.permits(ip("10.1.2.3")));
        assert!(policy.permits(ip("::ffff:10.1.2.3")));
        assert!(!policy.permits(ip("10.2.0.1")));
        assert!(OutboundPolicy::local_testing().permits(ip("127.0.0.1")));
        assert!(!OutboundPolicy::local_testing().permits(ip("169.254.169.254")));
    }

    #[test]
    fn internal_host_names_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST",
            "api.localhost",
            "127.0.0.1",
            "[::1]",
            "metadata.google.internal",
            "printer.local",
            "*.internal",
        ] {
            assert!(names_internal_host(host), "{host}");
        }
        for host in ["hooks.example.com", "8.8.8.8", "*.example.com", "localhost.example.com"] {
            assert!(!names_internal_host(host), "{host}");
        }
    }
}
