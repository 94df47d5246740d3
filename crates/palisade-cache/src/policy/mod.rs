//! The cache's decisions as pure functions: no tokio, no clock reads, no I/O — times are
//! parameters — so the same rules run in an edge runtime as in this layer.
//!
//! | module | decides |
//! |---|---|
//! | `directives.rs` | `Cache-Control` of responses and requests, `Pragma` |
//! | `targeted.rs` | `CDN-Cache-Control` and other targeted fields (RFC 9213) |
//! | `freshness.rs` | lifetime (`s-maxage`, `max-age`, `Expires`, heuristic), age (§4.2.3) |
//! | `storable.rs` | whether a response may be stored (§3, §3.5) |
//! | `vary.rs` | which stored variant a request selects (§4.1) |
//! | `reuse.rs` | fresh, stale-while-revalidate, revalidate, stale-if-error (§4.2.4, RFC 5861) |
//! | `validation.rs` | conditional requests, 304 freshening, client preconditions (§4.3) |
//! | `invalidation.rs` | what an unsafe method invalidates (§4.4) |
//! | `range.rs` | one byte range served from a stored complete response (RFC 9110 §14) |
//! | `cache_status.rs` | the `Cache-Status` field (RFC 9211) |
//!
//! Written here rather than on `http-cache-semantics`: that crate (RFC 7234) has no
//! stale-while-revalidate, stale-if-error or targeted fields, and keeps its parsed directives
//! private, so they could not be added on top.

pub mod cache_status;
pub mod directives;
pub mod freshness;
pub mod invalidation;
pub mod range;
pub mod reuse;
pub mod storable;
pub mod targeted;
pub mod validation;
pub mod vary;

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use directives::ResponseDirectives;

/// Settings of the cache's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Targeted fields this cache obeys instead of `Cache-Control`, first match wins
    /// (default: `CDN-Cache-Control`; put your own, e.g. `Palisade-Cache-Control`, first).
    pub targets: Vec<HeaderName>,
    /// The heuristic lifetime as a fraction of the time since `Last-Modified` (default 0.1).
    pub heuristic_fraction: f64,
    /// The longest heuristic lifetime (default one day).
    pub heuristic_cap: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            targets: vec![HeaderName::from_static("cdn-cache-control")],
            heuristic_fraction: 0.1,
            heuristic_cap: Duration::from_secs(24 * 3600),
        }
    }
}

/// A response's caching directives for this cache, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePolicy {
    /// The effective directives.
    pub directives: ResponseDirectives,
    /// Whether a targeted field supplied them (then `Cache-Control` and `Expires` are ignored).
    pub targeted: bool,
}

/// The directives of a response for this cache: its first valid targeted field, else its
/// `Cache-Control`.
pub fn response_policy(headers: &HeaderMap, config: &PolicyConfig) -> ResponsePolicy {
    match targeted::targeted_directives(headers, &config.targets) {
        Some(directives) => ResponsePolicy {
            directives,
            targeted: true,
        },
        None => ResponsePolicy {
            directives: ResponseDirectives::from_headers(headers),
            targeted: false,
        },
    }
}

/// The primary cache key of a request: its target URI (`scheme://authority/path?query`); the
/// authority from the URI, else from `Host`. `GET` and `HEAD` share it.
pub fn primary_key(uri: &Uri, host: Option<&HeaderValue>) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = match uri.authority() {
        Some(a) => a.as_str().to_ascii_lowercase(),
        None => host
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut key = String::with_capacity(scheme.len() + authority.len() + path.len() + 3);
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(&authority);
    key.push_str(path);
    key
}

/// The most surrogate keys kept per response, and the longest one.
pub const MAX_SURROGATE_KEYS: usize = 64;
/// The longest surrogate key kept, in bytes.
pub const MAX_SURROGATE_KEY_LEN: usize = 256;

/// The response's `Surrogate-Key` tags (space-separated), bounded in count and length.
pub fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for line in headers.get_all(HeaderName::from_static("surrogate-key")) {
        for key in String::from_utf8_lossy(line.as_bytes()).split_ascii_whitespace() {
            if key.len() <= MAX_SURROGATE_KEY_LEN
                && keys.len() < MAX_SURROGATE_KEYS
                && !keys.iter().any(|k| k == key)
            {
                keys.push(key.to_owned());
            }
        }
    }
    keys
}

#[cfg(test)]
pub(crate) mod test_support {
    use http::{HeaderMap, HeaderValue};

    /// A header map from literal pairs (repeated names append).
    pub(crate) fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let uri: Uri = "/a?b=1".parse().unwrap();
        assert_eq!(
            primary_key(&uri, Some(&HeaderValue::from_static("Example.com"))),
            "http://example.com/a?b=1"
        );
        let mut h = HeaderMap::new();
        h.insert("surrogate-key", HeaderValue::from_static("a  b a"));
        assert_eq!(surrogate_keys(&h), ["a", "b"]);
    }
}
