//! Spin's `allowed_outbound_hosts` rules (`scheme://host[:port]`).
//!
//! Mirrors the matching in Spin's outbound-networking config: the scheme is
//! mandatory (`*` for any), the host is exact, `*`, `*.suffix` or an IPv4 CIDR,
//! the port is a number, a range `a..b` (end exclusive), `*`, or omitted (the
//! scheme's well-known port). Paths are rejected. Templates (`{{ var }}`) and
//! `self` are not supported by this test host.

use std::fmt;
use std::net::Ipv4Addr;

use anyhow::{Context as _, bail, ensure};

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: Option<String>,
    host: HostRule,
    port: PortRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Any,
    Suffix(String),
    Exact(String),
    Cidr(Ipv4Addr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    Any,
    Port(u16),
    Range(u16, u16),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHost {
    /// Parse one entry, rejecting what Spin rejects when loading a manifest.
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        let original = entry.to_string();
        let url = entry.trim();
        ensure!(
            !url.contains("{{"),
            "{url:?}: templates are not supported by the test host; pass the resolved origin"
        );
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')");
        };
        let (host, rest) = match rest.strip_prefix('[') {
            // IPv6 literal: keep the brackets' content as the host.
            Some(v6) => {
                let (host, rest) = v6.split_once(']').context("unterminated IPv6 host")?;
                (host, rest.strip_prefix(':').unwrap_or(rest))
            }
            None => rest.rsplit_once(':').unwrap_or((rest, "")),
        };
        let port = match rest.split_once('/') {
            Some((port, path)) => {
                ensure!(path.is_empty(), "{url:?} has a path but is not allowed to");
                port
            }
            None => rest,
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(s.to_ascii_lowercase())
            }
            s => bail!("scheme {s:?} contains non alphabetic character"),
        };
        let host = host.trim().trim_end_matches('/');
        ensure!(
            !host.contains('/') || parse_cidr(host).is_some(),
            "hosts must not contain paths"
        );
        let host = if host == "*" {
            HostRule::Any
        } else if host == "self" || host == "self.alt" {
            bail!("{url:?}: self requests are not supported by the test host")
        } else if let Some((net, bits)) = parse_cidr(host) {
            HostRule::Cidr(net, bits)
        } else if let Some(domain) = host.strip_prefix("*.") {
            ensure!(
                !domain.contains('*'),
                "wildcards are allowed only as prefixes"
            );
            HostRule::Suffix(format!(".{}", domain.to_ascii_lowercase()))
        } else {
            ensure!(
                !host.contains('*'),
                "wildcards are allowed only as subdomains"
            );
            HostRule::Exact(host.to_ascii_lowercase())
        };
        let port = if port.is_empty() {
            let scheme = scheme.as_deref().unwrap_or("*");
            PortRule::Port(well_known_port(scheme).with_context(|| {
                format!("no port was provided and the scheme {scheme:?} does not have a known default port number")
            })?)
        } else if port == "*" {
            PortRule::Any
        } else if let Some((start, end)) = port.split_once("..") {
            PortRule::Range(
                start
                    .parse()
                    .with_context(|| format!("port range {port:?} contains non-number"))?,
                end.parse()
                    .with_context(|| format!("port range {port:?} contains non-number"))?,
            )
        } else {
            PortRule::Port(
                port.parse()
                    .with_context(|| format!("port {port:?} is not a number"))?,
            )
        };
        Ok(Self {
            original,
            scheme,
            host,
            port,
        })
    }

    /// Whether an absolute outbound request URI is allowed by this entry.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            // Relative ("self") requests are only allowed by `self` entries.
            return false;
        }
        let host = host.to_ascii_lowercase();
        let scheme_ok = self.scheme.as_ref().is_none_or(|s| *s == scheme);
        let host_ok = match &self.host {
            HostRule::Any => true,
            HostRule::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostRule::Exact(exact) => *exact == host,
            HostRule::Cidr(net, bits) => host
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| in_cidr(ip, *net, *bits)),
        };
        let port = uri.port_u16().or_else(|| well_known_port(&scheme));
        let port_ok = match (&self.port, port) {
            (PortRule::Any, _) => true,
            (_, None) => false,
            (PortRule::Port(p), Some(port)) => *p == port,
            (PortRule::Range(start, end), Some(port)) => (*start..*end).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

fn parse_cidr(host: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, bits) = host.split_once('/').unwrap_or((host, "32"));
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    Some((ip, bits))
}

fn in_cidr(ip: Ipv4Addr, net: Ipv4Addr, bits: u8) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::AllowedHost;

    fn allows(entry: &str, uri: &str) -> bool {
        AllowedHost::parse(entry)
            .unwrap()
            .allows(&uri.parse().unwrap())
    }

    #[test]
    fn origins() {
        assert!(allows(
            "http://127.0.0.1:18081",
            "http://127.0.0.1:18081/0/public/Time"
        ));
        assert!(!allows("http://127.0.0.1:18081", "http://127.0.0.1:18082/"));
        assert!(!allows(
            "http://127.0.0.1:18081",
            "https://127.0.0.1:18081/"
        ));
        assert!(!allows("http://127.0.0.1:18081", "http://localhost:18081/"));
        assert!(allows(
            "https://api.kraken.com",
            "https://api.kraken.com/0/private/AddOrder"
        ));
        assert!(allows(
            "https://api.kraken.com",
            "https://api.kraken.com:443/"
        ));
        assert!(!allows(
            "https://api.kraken.com",
            "https://api.kraken.com:8443/"
        ));
        assert!(!allows("https://api.kraken.com", "https://evil.example/"));
        assert!(allows(
            "https://*.kraken.com",
            "https://futures.kraken.com/"
        ));
        assert!(allows("http://127.0.0.1:*", "http://127.0.0.1:1/"));
        assert!(allows("*://*:*", "http://anything:9/"));
        assert!(allows("http://127.0.0.0/8", "http://127.1.2.3/"));
        assert!(allows(
            "http://localhost:8000..8010",
            "http://localhost:8009/"
        ));
        assert!(!allows(
            "http://localhost:8000..8010",
            "http://localhost:8010/"
        ));
    }

    #[test]
    fn rejected_entries() {
        for bad in [
            "api.kraken.com",
            "https://api.kraken.com/0",
            "https://{{ kraken_base_url }}",
            "ftp://example.com",
            "https://a.*.com",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }
}
