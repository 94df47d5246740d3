//! Which client a request belongs to: the [`KeyExtractor`] trait and ready extractors.
//!
//! A key names the bucket a request is counted in. Extractors read only the request head
//! ([`RequestHead`]), so they work for any body type and never consume the body.
//!
//! ```
//! use palisade_core::key::{ClientIp, Header, KeyExtractor, RequestHead};
//!
//! // The API key when present, else the client address.
//! let by_api_key_or_ip = Header::new("x-api-key").or(ClientIp::direct());
//!
//! let request = http::Request::builder()
//!     .header("x-api-key", "k-123")
//!     .body(())
//!     .unwrap();
//! let key = by_api_key_or_ip.extract(&RequestHead::from(&request)).unwrap();
//! assert_eq!(key.to_string(), "header:k-123");
//! ```

mod caller;
mod client_ip;
mod closure;
mod combine;
mod header;
pub mod path;
mod principal;
#[cfg(feature = "axum")]
mod route;

use std::{
    fmt::{self, Write},
    net::IpAddr,
    sync::Arc,
};

use sha2::{Digest, Sha256};

pub use caller::{Caller, CallerKey};
pub use client_ip::{ClientIp, ForwardedHeader, PeerAddr};
pub use closure::FnKey;
pub use combine::{Global, Or};
pub use header::Header;
pub use path::PathSegment;
pub use principal::Principal;
#[cfg(feature = "axum")]
pub use route::MatchedRoute;

/// Longest key material kept verbatim; longer material is replaced by its hash.
pub const MAX_KEY_MATERIAL: usize = 128;

/// Whether `value` may appear verbatim in a key: at most [`MAX_KEY_MATERIAL`] bytes of printable
/// ASCII, without `#` (which marks hashed material) or `|` (which joins composite keys).
///
/// Everything else is hashed, so the two namespaces are disjoint: a hashed value always holds a
/// `#` and a verbatim one never does, hence no value a client sends can equal the hash of
/// another (sending the literal `#<digest>` of a victim's long API key hashes it again), and no
/// value can forge the boundary between the parts of a composite key.
pub fn is_verbatim(value: &[u8]) -> bool {
    value.len() <= MAX_KEY_MATERIAL
        && value
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'#' && *b != b'|')
}

/// The identity a request is counted under: a client address, a header value, a user…
///
/// Keys are cheap to hash and compare. Text material that is long, not printable ASCII, or
/// holds `#` or `|` is replaced by a SHA-256 digest when the key is built ([`Key::text`]; see
/// [`is_verbatim`]), so an attacker sending an 8 KiB header cannot make the store keep 8 KiB per
/// key, and hashed and verbatim material never meet. Build text keys with [`Key::text`] or
/// `From<&str>`; the `Text` variant is for material already in that form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// One bucket for every request.
    Global,
    /// A client address (IPv6 already grouped to its network prefix by [`ClientIp`]).
    Ip(IpAddr),
    /// A labelled text value such as `header:k-123` or `user:42`.
    Text(Arc<str>),
    /// Several keys that together name the bucket, e.g. route and client.
    Composite(Arc<[Key]>),
}

/// The first 128 bits of SHA-256 of `bytes`, as 32 lowercase hex digits.
pub fn digest_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

impl Key {
    /// A text key `label:value`. Values that are not [verbatim](is_verbatim) — longer than
    /// [`MAX_KEY_MATERIAL`] bytes, holding bytes outside printable ASCII, or a `#` or `|` — are
    /// hashed (`label:#<hex>`), so keys stay short, safe to log, and no client value can equal
    /// a hashed one.
    pub fn text(label: &str, value: &[u8]) -> Key {
        let mut s = String::with_capacity(label.len() + 1 + value.len().min(MAX_KEY_MATERIAL));
        s.push_str(label);
        s.push(':');
        if is_verbatim(value) {
            // Checked above: every byte is printable ASCII, hence valid UTF-8.
            s.push_str(std::str::from_utf8(value).unwrap_or_default());
        } else {
            s.push('#');
            s.push_str(&digest_hex(value));
        }
        Key::Text(s.into())
    }
}

impl From<&str> for Key {
    /// A text key; text that is not [verbatim](is_verbatim) is hashed as in [`Key::text`].
    fn from(s: &str) -> Key {
        if is_verbatim(s.as_bytes()) {
            Key::Text(s.into())
        } else {
            Key::text("", s.as_bytes())
        }
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::from(s.as_str())
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Key {
        Key::Ip(ip)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Global => f.write_str("global"),
            Key::Ip(ip) => write!(f, "ip:{ip}"),
            Key::Text(s) => f.write_str(s),
            Key::Composite(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    fmt::Display::fmt(part, f)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// Why no key could be taken from a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The header the key comes from is absent.
    #[error("the request has no `{0}` header")]
    MissingHeader(&'static str),
    /// The request carries no peer address: serve with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`) or insert a [`PeerAddr`].
    #[error("the request carries no peer address (serve with connect info or insert a PeerAddr)")]
    MissingPeerAddr,
    /// The principal type is not in the request extensions (is authentication layered first?).
    #[error("the request carries no authenticated principal `{0}`")]
    MissingPrincipal(&'static str),
    /// The request did not match a route (the extractor runs outside a router).
    #[error("the request has no matched route")]
    MissingRoute,
    /// The path does not hold the key: too few segments, or a segment that is not UTF-8 once
    /// percent-decoded.
    #[error("invalid path: {0}")]
    InvalidPath(Arc<str>),
    /// A custom extractor declined the request.
    #[error("{0}")]
    Custom(Arc<str>),
}

/// The parts of a request a key may depend on, borrowed from an `http::Request<B>` of any body.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The request target.
    pub uri: &'a http::Uri,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The request extensions (connect info, principals, matched route).
    pub extensions: &'a http::Extensions,
}

impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// Takes the [`Key`] a request is counted under.
///
/// Implemented by the ready extractors in this module, by closures through [`FnKey`], and by
/// tuples of extractors, which combine their keys (`(MatchedRoute, ClientIp::direct())` counts
/// each client separately on each route).
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of this request, or why there is none.
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError>;

    /// This key when there is one, else `other`'s.
    fn or<E: KeyExtractor>(self, other: E) -> Or<Self, E>
    where
        Self: Sized,
    {
        Or::new(self, other)
    }
}

impl<E: KeyExtractor + ?Sized> KeyExtractor for Arc<E> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (**self).extract(req)
    }
}

impl<E: KeyExtractor + ?Sized> KeyExtractor for Box<E> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (**self).extract(req)
    }
}

macro_rules! composite_tuple {
    ($($name:ident),+) => {
        impl<$($name: KeyExtractor),+> KeyExtractor for ($($name,)+) {
            #[allow(non_snake_case)]
            fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
                let ($($name,)+) = self;
                Ok(Key::Composite(Arc::from([$($name.extract(req)?),+])))
            }
        }
    };
}
composite_tuple!(A, B);
composite_tuple!(A, B, C);
composite_tuple!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_and_verbatim_material_never_meet() {
        // Regression: the printed hash of a long key, sent as a key, was the same key.
        let long = "k".repeat(MAX_KEY_MATERIAL + 1);
        let hashed = Key::text("header", long.as_bytes());
        let printed = hashed.to_string();
        let value = printed.strip_prefix("header:").unwrap();
        assert!(value.starts_with('#'));
        assert_ne!(Key::text("header", value.as_bytes()), hashed);
        assert_ne!(Key::from(printed.as_str()), hashed);
        // Verbatim values keep their text.
        assert_eq!(Key::text("header", b"k-123").to_string(), "header:k-123");
        assert_eq!(Key::from("user:42").to_string(), "user:42");
    }

    #[test]
    fn composite_boundaries_cannot_be_forged() {
        let a = Key::Composite(Arc::from([
            Key::text("header", b"x|header:y"),
            Key::text("header", b"z"),
        ]));
        let b = Key::Composite(Arc::from([
            Key::text("header", b"x"),
            Key::text("header", b"y|header:z"),
        ]));
        assert_ne!(a.to_string(), b.to_string());
    }
}
