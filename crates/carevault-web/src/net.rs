//! Who is asking, and where this server lives: trusted reverse proxies (`X-Forwarded-For`) and
//! the public origin used for links and the cross-origin check.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// One IP address or CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    net: u128,
    prefix: u8,
    v4: bool,
}

fn bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), true),
        // An IPv4-mapped IPv6 address (a dual-stack listener) is its IPv4 address.
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), true),
            None => (u128::from(a), false),
        },
    }
}

impl Block {
    fn parse(s: &str) -> Option<Block> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let (value, v4) = bits(addr.trim().parse::<IpAddr>().ok()?);
        let width = if v4 { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return None;
        }
        let mask = Self::mask(prefix, width);
        Some(Block { net: value & mask, prefix, v4 })
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            let all: u128 = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
            all & !((1u128 << (width - prefix)) - 1)
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (value, v4) = bits(ip);
        v4 == self.v4 && value & Self::mask(self.prefix, if v4 { 32 } else { 128 }) == self.net
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Block>);

impl TrustedProxies {
    /// Parses IP addresses and CIDR blocks (`10.0.0.7`, `10.1.0.0/16`, `fd00::/8`).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<TrustedProxies, String> {
        let mut out = Vec::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            out.push(
                Block::parse(item).ok_or_else(|| format!("'{item}' is not an IP address or CIDR block (e.g. 10.0.0.7 or 10.1.0.0/16)"))?,
            );
        }
        Ok(TrustedProxies(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// rightmost address of `X-Forwarded-For` that is not itself a trusted proxy (each proxy
    /// appends the address it received the request from, so everything left of the first
    /// untrusted hop may be forged by the client). A malformed entry stops the walk at the last
    /// trusted hop.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(h: &str) -> Option<IpAddr> {
    h.parse::<IpAddr>().ok().or_else(|| h.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's address as the listener worked it out (see [`TrustedProxies::client`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// `https://host[:port]`, normalized: lower case, no default port, no trailing slash. Only
/// https origins without path, query, user or fragment are accepted.
pub fn normalize_origin(s: &str) -> Result<String, String> {
    let bad = || format!("'{s}' is not an https origin such as https://clinic.example:8443 (no path)");
    let rest = s.trim().strip_prefix("https://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let lower = rest.to_ascii_lowercase();
    let (host, port) = if let Some(v6) = lower.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match lower.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (lower.clone(), None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')) {
        return Err(bad());
    }
    match port {
        None | Some("443") => Ok(format!("https://{host}")),
        Some(p) => {
            let n: u16 = p.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(format!("https://{host}:{n}"))
        }
    }
}

/// The origin used when none is configured: `https://localhost:PORT` for a loopback or
/// wildcard listener (the names of the generated certificate), else the listener's address.
pub(crate) fn default_origin(listen: SocketAddr) -> String {
    let ip = listen.ip();
    let port = listen.port();
    let host = if ip.is_loopback() || ip.is_unspecified() {
        "localhost".to_string()
    } else {
        match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    };
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append("x-forwarded-for", HeaderValue::from_str(x).expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn blocks() {
        let t = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.7", "fd00::/8", " "]).expect("parse");
        assert_eq!(t.len(), 3);
        assert!(t.trusts(ip("10.200.3.4")));
        assert!(t.trusts(ip("::ffff:10.1.1.1")), "an IPv4-mapped peer is its IPv4 address");
        assert!(t.trusts(ip("192.0.2.7")) && !t.trusts(ip("192.0.2.8")));
        assert!(t.trusts(ip("fd12::1")) && !t.trusts(ip("fe80::1")));
        assert!(TrustedProxies::parse(["0.0.0.0/0"]).expect("all").trusts(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.1/x", "::/129"] {
            assert!(TrustedProxies::parse([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(["10.0.0.1", "10.0.0.2"]).expect("parse");
        // Not a trusted peer: the header is ignored.
        assert_eq!(t.client(ip("203.0.113.5"), &xff(&["198.51.100.1"])), ip("203.0.113.5"));
        // The rightmost untrusted hop; what the client wrote on the left is not believed.
        assert_eq!(t.client(ip("10.0.0.1"), &xff(&["6.6.6.6, 198.51.100.1, 10.0.0.2"])), ip("198.51.100.1"));
        assert_eq!(t.client(ip("10.0.0.1"), &xff(&["6.6.6.6", "198.51.100.1:4711"])), ip("198.51.100.1"));
        assert_eq!(t.client(ip("10.0.0.1"), &xff(&["[2001:db8::5]:443"])), ip("2001:db8::5"));
        // No header, or garbage: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(t.client(ip("10.0.0.1"), &xff(&["<script>"])), ip("10.0.0.1"));
        // Only trusted hops: the leftmost.
        assert_eq!(t.client(ip("10.0.0.1"), &xff(&["10.0.0.2"])), ip("10.0.0.2"));
    }

    #[test]
    fn origins() {
        assert_eq!(normalize_origin("https://Clinic.Example:8443/").as_deref(), Ok("https://clinic.example:8443"));
        assert_eq!(normalize_origin("https://clinic.example:443").as_deref(), Ok("https://clinic.example"));
        assert_eq!(normalize_origin("https://[::1]:8443").as_deref(), Ok("https://[::1]:8443"));
        for bad in ["http://clinic.example", "https://clinic.example/fhir", "https://a@b", "https://x:0", "https://x:99999", "https://"] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(default_origin("127.0.0.1:8443".parse().expect("a")), "https://localhost:8443");
        assert_eq!(default_origin("0.0.0.0:443".parse().expect("a")), "https://localhost");
        assert_eq!(default_origin("192.0.2.4:8443".parse().expect("a")), "https://192.0.2.4:8443");
        assert_eq!(default_origin("[2001:db8::4]:8443".parse().expect("a")), "https://[2001:db8::4]:8443");
    }
}
