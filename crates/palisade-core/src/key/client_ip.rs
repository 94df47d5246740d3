use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

use super::{Key, KeyError, KeyExtractor, RequestHead};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the connection's peer, for servers that do not record it themselves.
///
/// axum records it as `ConnectInfo<SocketAddr>` when served with
/// `into_make_service_with_connect_info::<SocketAddr>()` (read with the `axum` feature); other
/// servers insert a `PeerAddr` into the request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Which forwarding header a trusted proxy writes the client address into.
///
/// A proxy *appends* to one header and passes every other header through untouched, so only
/// the header your proxies actually write can be believed: a client behind an nginx that
/// appends `X-Forwarded-For` can send its own `Forwarded: for=1.2.3.4`, and an extractor that
/// read "whichever is present" would key it as `1.2.3.4`. Exactly one header is read; the
/// others are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx `proxy_add_x_forwarded_for`, AWS ALB/ELB, HAProxy
    /// `option forwardfor`, most CDNs): a list read from the right. The default.
    XForwardedFor,
    /// `Forwarded` (RFC 7239) `for=` nodes, read from the right: for proxies configured to
    /// write it (Envoy, some service meshes).
    Forwarded,
    /// A header holding exactly one address, set (overwritten) by the proxy:
    /// `CF-Connecting-IP` (Cloudflare), `True-Client-IP` (Akamai, Cloudflare Enterprise),
    /// `Fly-Client-IP`, nginx `X-Real-IP`. Believed only from a trusted peer; a header with
    /// several values, or a value that is not an address, is ignored (the peer is the client).
    Single(HeaderName),
}

impl ForwardedHeader {
    /// `CF-Connecting-IP`, written by Cloudflare.
    pub fn cf_connecting_ip() -> Self {
        ForwardedHeader::Single(HeaderName::from_static("cf-connecting-ip"))
    }

    /// `True-Client-IP`, written by Akamai and Cloudflare Enterprise.
    pub fn true_client_ip() -> Self {
        ForwardedHeader::Single(HeaderName::from_static("true-client-ip"))
    }

    /// `X-Real-IP`, as nginx's `proxy_set_header X-Real-IP $remote_addr` writes it.
    pub fn x_real_ip() -> Self {
        ForwardedHeader::Single(HeaderName::from_static("x-real-ip"))
    }

    /// `Fastly-Client-IP`, written by Fastly.
    pub fn fastly_client_ip() -> Self {
        ForwardedHeader::Single(HeaderName::from_static("fastly-client-ip"))
    }

    /// `Fly-Client-IP`, written by Fly.io's proxy.
    pub fn fly_client_ip() -> Self {
        ForwardedHeader::Single(HeaderName::from_static("fly-client-ip"))
    }
}

/// Keys by the client's IP address.
///
/// The connection's peer is the client unless the peer is a **trusted proxy** (configured by
/// CIDR). Only then is the one configured [`ForwardedHeader`] read — `X-Forwarded-For` by
/// default, since that is what nginx, ALB/ELB, HAProxy and most CDNs append — never "whichever
/// header is present". List headers are read from the right: each hop that is itself a trusted
/// proxy is skipped, and the first untrusted hop is the client. The leftmost entries are written
/// by the client and can be anything, so they are never believed on their own, and a forwarding
/// header from an untrusted peer is ignored entirely.
///
/// IPv6 clients are grouped by network prefix (`/64` by default): one host usually owns a whole
/// `/64`, so keying by full address would give it 2⁶⁴ buckets.
///
/// ```
/// use palisade_core::key::{ClientIp, ForwardedHeader, KeyExtractor, PeerAddr, RequestHead};
///
/// let behind_proxy = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
///
/// let mut request = http::Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7")
///     .header("forwarded", "for=1.2.3.4") // the client's own: not read
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(PeerAddr("10.0.0.2:443".parse().unwrap()));
/// let key = behind_proxy.extract(&RequestHead::from(&request)).unwrap();
/// assert_eq!(key.to_string(), "ip:203.0.113.9");
///
/// // Behind Cloudflare (trust its published ranges), read the header it sets:
/// let behind_cloudflare = ClientIp::trusting(["173.245.48.0/20".parse().unwrap()])
///     .header(ForwardedHeader::cf_connecting_ip());
/// # let _ = behind_cloudflare;
/// ```
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted_proxies: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Keys by the connection's peer address; forwarding headers are never read.
    pub fn direct() -> Self {
        ClientIp {
            trusted_proxies: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
        }
    }

    /// Believes `X-Forwarded-For` only from peers inside `proxies` (choose another header with
    /// [`header`](Self::header)).
    pub fn trusting(proxies: impl IntoIterator<Item = IpNet>) -> Self {
        ClientIp {
            trusted_proxies: proxies.into_iter().map(|net| net.trunc()).collect(),
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
        }
    }

    /// Reads the client address from `header` (default [`ForwardedHeader::XForwardedFor`]).
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Groups IPv6 clients by this prefix length (0–128; default 64, 128 keys every address).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address given the peer and the forwarding headers: a pure function.
    fn client_of(&self, peer: IpAddr, req: &RequestHead<'_>) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = match &self.header {
            ForwardedHeader::XForwardedFor => req
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .flat_map(|v| split_list(v.as_bytes()))
                .map(parse_node)
                .collect(),
            ForwardedHeader::Forwarded => req
                .headers
                .get_all(&FORWARDED)
                .iter()
                .flat_map(|v| split_list(v.as_bytes()))
                .map(forwarded_for)
                .collect(),
            ForwardedHeader::Single(name) => {
                let mut values = req.headers.get_all(name).iter();
                return match (values.next(), values.next()) {
                    (Some(value), None) => parse_node(trim(value.as_bytes()))
                        .map(canonical)
                        .unwrap_or(peer),
                    _ => peer,
                };
            }
        };
        // Walk hops from the nearest (rightmost) to the farthest.
        let mut nearest = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                // An unparsable hop ends what we can know: the last proxy we trust saw it.
                None => return nearest,
                Some(ip) => {
                    let ip = canonical(ip);
                    if !self.is_trusted(ip) {
                        return ip;
                    }
                    nearest = ip;
                }
            }
        }
        nearest
    }

    fn group(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let bits = u32::from(self.ipv6_prefix);
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl Default for ClientIp {
    fn default() -> Self {
        ClientIp::direct()
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let peer = peer_addr(req).ok_or(KeyError::MissingPeerAddr)?;
        Ok(Key::Ip(self.group(self.client_of(peer, req))))
    }
}

fn peer_addr(req: &RequestHead<'_>) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = req.extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 client it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(trim)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The `for=` node of one `Forwarded` element, if it names an address.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    element
        .split(|b| *b == b';')
        .map(trim)
        .find_map(|pair| {
            let (name, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            name.eq_ignore_ascii_case(b"for").then(|| &value[1..])
        })
        .and_then(|value| {
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            parse_node(value)
        })
}

/// An address with optional port: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node).ok()?;
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end].parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(extractor: &ClientIp, peer: &str, headers: &[(&str, &str)]) -> String {
        let mut builder = http::Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut req = builder.body(()).unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        extractor
            .extract(&RequestHead::from(&req))
            .unwrap()
            .to_string()
    }

    fn proxies() -> ClientIp {
        ClientIp::trusting(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let k = key(
            &proxies(),
            "198.51.100.1:1",
            &[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")],
        );
        assert_eq!(k, "ip:198.51.100.1");
        let k = key(
            &ClientIp::direct(),
            "198.51.100.1:1",
            &[("x-forwarded-for", "1.1.1.1")],
        );
        assert_eq!(k, "ip:198.51.100.1");
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let k = key(
            &proxies(),
            "10.0.0.1:1",
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.9.9.9")],
        );
        assert_eq!(k, "ip:203.0.113.5");
        // Several header lines form one list.
        let k = key(
            &proxies(),
            "10.0.0.1:1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        );
        assert_eq!(k, "ip:203.0.113.7");
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // Regression: behind an XFF-appending proxy, a client-sent `Forwarded` chose the key.
        let headers = [
            ("x-forwarded-for", "203.0.113.5"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "5.5.5.5"),
        ];
        assert_eq!(key(&proxies(), "10.0.0.1:1", &headers), "ip:203.0.113.5");
        let forwarded = proxies().header(ForwardedHeader::Forwarded);
        assert_eq!(key(&forwarded, "10.0.0.1:1", &headers), "ip:1.2.3.4");
        let real_ip = proxies().header(ForwardedHeader::x_real_ip());
        assert_eq!(key(&real_ip, "10.0.0.1:1", &headers), "ip:5.5.5.5");
        let cdn = [
            ("fastly-client-ip", "6.6.6.6"),
            ("fly-client-ip", "7.7.7.7"),
        ];
        let fastly = proxies().header(ForwardedHeader::fastly_client_ip());
        assert_eq!(key(&fastly, "10.0.0.1:1", &cdn), "ip:6.6.6.6");
        let fly = proxies().header(ForwardedHeader::fly_client_ip());
        assert_eq!(key(&fly, "10.0.0.1:1", &cdn), "ip:7.7.7.7");
        // From an untrusted peer the CDN header is a client's claim: ignored.
        assert_eq!(key(&fastly, "198.51.100.7:1", &cdn), "ip:198.51.100.7");
        // The configured header absent: the trusted peer is the client, never another header.
        let cf = proxies().header(ForwardedHeader::cf_connecting_ip());
        assert_eq!(key(&cf, "10.0.0.1:1", &headers), "ip:10.0.0.1");
        let only_forwarded = [("forwarded", "for=1.2.3.4")];
        assert_eq!(
            key(&proxies(), "10.0.0.1:1", &only_forwarded),
            "ip:10.0.0.1"
        );
    }

    #[test]
    fn single_value_header_rules() {
        let cf = proxies().header(ForwardedHeader::cf_connecting_ip());
        let k = key(
            &cf,
            "10.0.0.1:1",
            &[("cf-connecting-ip", " 2001:db8:cafe::17 ")],
        );
        assert_eq!(k, "ip:2001:db8:cafe::");
        // Two values (one of them the client's own) or garbage: not believed.
        let two = [
            ("cf-connecting-ip", "1.1.1.1"),
            ("cf-connecting-ip", "2.2.2.2"),
        ];
        assert_eq!(key(&cf, "10.0.0.1:1", &two), "ip:10.0.0.1");
        let list = [("cf-connecting-ip", "1.1.1.1, 2.2.2.2")];
        assert_eq!(key(&cf, "10.0.0.1:1", &list), "ip:10.0.0.1");
        // From an untrusted peer: ignored.
        let k = key(&cf, "198.51.100.1:1", &[("cf-connecting-ip", "1.1.1.1")]);
        assert_eq!(k, "ip:198.51.100.1");
    }

    #[test]
    fn forwarded_elements_when_configured() {
        let k = key(
            &proxies().header(ForwardedHeader::Forwarded),
            "10.0.0.1:1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                (
                    "forwarded",
                    "for=7.7.7.7;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
                ),
            ],
        );
        assert_eq!(k, "ip:2001:db8:cafe::");
    }

    #[test]
    fn garbage_hop_stops_at_last_trusted_proxy() {
        let k = key(
            &proxies(),
            "10.0.0.1:1",
            &[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.5")],
        );
        assert_eq!(k, "ip:10.0.0.5");
        let forwarded = proxies().header(ForwardedHeader::Forwarded);
        let k = key(&forwarded, "10.0.0.1:1", &[("forwarded", "for=unknown")]);
        assert_eq!(k, "ip:10.0.0.1");
    }

    #[test]
    fn ipv6_grouped_by_prefix_and_mapped_v4_unwrapped() {
        let k = key(&ClientIp::direct(), "[2001:db8:1:2:3:4:5:6]:1", &[]);
        assert_eq!(k, "ip:2001:db8:1:2::");
        let k = key(&ClientIp::direct().ipv6_prefix(128), "[2001:db8::6]:1", &[]);
        assert_eq!(k, "ip:2001:db8::6");
        let k = key(&ClientIp::direct(), "[::ffff:192.0.2.1]:1", &[]);
        assert_eq!(k, "ip:192.0.2.1");
    }

    #[test]
    fn missing_peer_is_an_error() {
        let req = http::Request::new(());
        assert_eq!(
            ClientIp::direct().extract(&RequestHead::from(&req)),
            Err(KeyError::MissingPeerAddr)
        );
    }
}
