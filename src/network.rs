//! Network controls (contract 2.1, item 6): the `allowed_ips` allow-list of addresses and
//! CIDRs, and where the client address comes from. Failing closed: while `allowed_ips` is set,
//! a request without a trustworthy address is refused.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An outbound URL as the host adapter sends it: `https://` (`true`) or `http://`, the
/// authority, and the path with its query, which must start with `/`. `None` for anything
/// else. The notification settings are checked with it, so a URL the adapter cannot send is a
/// configuration problem, not a failure at every order.
pub fn split_url(url: &str) -> Option<(bool, &str, &str)> {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let slash = rest.find('/')?;
    let authority = &rest[..slash];
    if authority.is_empty() || authority.contains(['?', '#']) {
        return None;
    }
    Some((https, authority, &rest[slash..]))
}

/// TradingView's published webhook sender addresses, the recommended `allowed_ips`.
pub const TRADINGVIEW_IPS: &str = "52.89.214.238,34.212.75.30,54.218.53.128,52.32.178.7";

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `2001:db8::1` or `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = canonical(
            IpAddr::from_str(addr).map_err(|_| format!("`{text}` is not an IP address or CIDR"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses the `allowed_ips` setting: a comma list of addresses and CIDRs.
pub fn parse_allowed_ips(text: &str) -> Result<Vec<IpNet>, String> {
    let nets: Vec<IpNet> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(IpNet::parse)
        .collect::<Result<_, _>>()?;
    if nets.is_empty() {
        return Err("lists no address".into());
    }
    Ok(nets)
}

/// Reads one client address: `ip`, `ip:port` or `[v6]:port`. A list (`a, b`) or anything
/// else is not trustworthy.
pub fn parse_client_addr(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if t.contains(',') {
        return None;
    }
    IpAddr::from_str(t)
        .ok()
        .or_else(|| SocketAddr::from_str(t).ok().map(|s| s.ip()))
        .map(canonical)
}

/// Whether a client may reach the bridge: always when `allowed` is empty; otherwise only a
/// known address inside the list.
pub fn is_allowed(allowed: &[IpNet], client: Option<IpAddr>) -> bool {
    allowed.is_empty() || client.is_some_and(|ip| allowed.iter().any(|n| n.contains(ip)))
}

/// Parses a header name for `client_ip_header` (an HTTP token, compared in lower case).
pub fn parse_header_name(text: &str) -> Result<String, String> {
    let t = text.trim();
    if !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!("`{t}` is not a header name"))
    }
}

/// Parses `cors_allowed_origins`: a comma list of `scheme://host[:port]`.
pub fn parse_origins(text: &str) -> Result<Vec<String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|o| {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| format!("`{o}` is not an origin"))?;
            let ok = !rest.is_empty()
                && rest.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if ok {
                Ok(o.to_ascii_lowercase())
            } else {
                Err(format!("`{o}` is not an origin (scheme://host[:port])"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        IpAddr::from_str(s).unwrap()
    }

    #[test]
    fn addresses_and_cidrs() {
        let nets = parse_allowed_ips("52.89.214.238, 10.0.0.0/8, 2001:db8::/32, ::1").unwrap();
        for allowed in [
            "52.89.214.238",
            "10.1.2.3",
            "2001:db8::5",
            "::1",
            "::ffff:10.9.9.9",
        ] {
            assert!(is_allowed(&nets, Some(ip(allowed))), "{allowed}");
        }
        for denied in [
            "52.89.214.239",
            "11.0.0.1",
            "2001:db9::1",
            "::2",
            "192.168.1.1",
        ] {
            assert!(!is_allowed(&nets, Some(ip(denied))), "{denied}");
        }
        assert!(!is_allowed(&nets, None), "no trustworthy address: deny");
        assert!(is_allowed(&[], None), "no list: everyone");
        let all4 = parse_allowed_ips("0.0.0.0/0").unwrap();
        assert!(is_allowed(&all4, Some(ip("8.8.8.8"))));
        assert!(!is_allowed(&all4, Some(ip("2001:db8::1"))));
        assert_eq!(parse_allowed_ips(TRADINGVIEW_IPS).unwrap().len(), 4);
    }

    #[test]
    fn refuses_bad_lists() {
        for bad in [
            "",
            " , ",
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "10.0.0.0/x",
            "example.com",
            "1.2.3.4/",
        ] {
            assert!(parse_allowed_ips(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_addresses() {
        assert_eq!(
            parse_client_addr("52.89.214.238:41234"),
            Some(ip("52.89.214.238"))
        );
        assert_eq!(
            parse_client_addr("52.89.214.238"),
            Some(ip("52.89.214.238"))
        );
        assert_eq!(
            parse_client_addr("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_client_addr("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_client_addr("1.2.3.4, 5.6.7.8"), None);
        assert_eq!(parse_client_addr("unknown"), None);
        assert_eq!(parse_client_addr(""), None);
    }

    #[test]
    fn headers_and_origins() {
        assert_eq!(parse_header_name("X-Real-IP").unwrap(), "x-real-ip");
        assert!(parse_header_name("bad header").is_err());
        assert_eq!(
            parse_origins("https://a.example, http://localhost:3000").unwrap(),
            ["https://a.example", "http://localhost:3000"]
        );
        assert!(parse_origins("*").is_err());
        assert!(parse_origins("https://a.example/path").is_err());
    }
}
