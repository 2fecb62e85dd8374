//! What an interpose class allows: hidden and read-only paths, the network
//! policy, the reported kernel release, and the syscalls it re-allows.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// A class's policy. It crosses from the shim to the supervisor process as
/// JSON, hence the serde derives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Absolute container paths that, with everything below them, do not
    /// exist for the container: calls naming them fail with `ENOENT`.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
    /// Absolute container paths under which creating, writing or changing
    /// anything fails with `EROFS`.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Which addresses the container may connect to, bind and send to.
    #[serde(default)]
    pub network: NetworkPolicy,
    /// What `uname(2)` reports as the kernel release, when set.
    #[serde(default)]
    pub kernel_release: Option<String>,
    /// Names from [`DENIED_BY_DEFAULT`](crate::DENIED_BY_DEFAULT) that this
    /// class allows after all.
    #[serde(default)]
    pub allow_syscalls: Vec<String>,
}

impl Policy {
    /// Checks what the types cannot: hidden and read-only paths are
    /// absolute. (Re-allowed syscall names are checked by
    /// [`filter`](crate::filter).)
    pub fn check(&self) -> Result<(), PolicyError> {
        for (field, paths) in [("hidden", &self.hidden), ("read_only", &self.read_only)] {
            if let Some(path) = paths.iter().find(|p| !p.is_absolute()) {
                return Err(PolicyError::RelativePath {
                    field,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The network part of a policy: `deny` wins over `allow`, which wins over
/// `default`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// What happens to an address no rule matches.
    #[serde(default)]
    pub default: NetAction,
    /// Addresses allowed unless a `deny` rule matches them too.
    #[serde(default)]
    pub allow: Vec<NetRule>,
    /// Addresses always refused.
    #[serde(default)]
    pub deny: Vec<NetRule>,
}

impl NetworkPolicy {
    /// What the policy says about `(ip, port)`. IPv4-mapped IPv6 addresses
    /// are judged as the IPv4 address they carry, so that an `AF_INET6`
    /// socket cannot reach what the IPv4 rules refuse.
    pub fn decide(&self, ip: IpAddr, port: u16) -> NetAction {
        let ip = canonical(ip);
        if self.deny.iter().any(|r| r.matches(ip, port)) {
            NetAction::Deny
        } else if self.allow.iter().any(|r| r.matches(ip, port)) {
            NetAction::Allow
        } else {
            self.default
        }
    }
}

/// Whether traffic to an address goes ahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetAction {
    /// The call goes ahead.
    #[default]
    Allow,
    /// The call fails (`EPERM` for connect and send, `EACCES` for bind).
    Deny,
}

/// An address range, and optionally a port range: `10.0.0.0/8`,
/// `127.0.0.1/32:8080`, `::1/128:1000-2000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRule {
    addr: IpAddr,
    prefix: u8,
    ports: Option<(u16, u16)>,
}

impl NetRule {
    /// Whether `(ip, port)` falls in the rule. An IPv4 rule never matches
    /// an IPv6 address and vice versa (mapped addresses are converted
    /// before they get here).
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        let in_net = match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)) << 96, self.prefix)
                    == u128::from(u32::from(net)) << 96
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(u128::from(ip), self.prefix) == net.into(),
            _ => false,
        };
        in_net && self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
    }
}

/// `bits` with everything after the first `prefix` bits cleared.
fn masked(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p))),
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else `ip`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for NetRule {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| PolicyError::BadNetRule {
            text: text.to_owned(),
            reason,
        };
        let (addr, rest) = text
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX[:PORT[-PORT]]"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let (prefix, ports) = match rest.split_once(':') {
            Some((prefix, ports)) => (prefix, Some(ports)),
            None => (rest, None),
        };
        let prefix: u8 = prefix.parse().map_err(|_| bad("not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad("prefix length too long for the address"));
        }
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => v6.into(),
        };
        if masked(bits, prefix) != bits {
            return Err(bad("address has bits set after the prefix"));
        }
        let ports = ports
            .map(|p| {
                let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                let lo: u16 = lo.parse().map_err(|_| bad("not a port number"))?;
                let hi: u16 = hi.parse().map_err(|_| bad("not a port number"))?;
                if lo > hi {
                    return Err(bad("port range ends before it starts"));
                }
                Ok((lo, hi))
            })
            .transpose()?;
        Ok(NetRule {
            addr,
            prefix,
            ports,
        })
    }
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)?;
        match self.ports {
            Some((lo, hi)) if lo == hi => write!(f, ":{lo}"),
            Some((lo, hi)) => write!(f, ":{lo}-{hi}"),
            None => Ok(()),
        }
    }
}

impl Serialize for NetRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
