//! Key material from the request path, decoded once, the way routers decode it.
//!
//! A router (axum's `Path`, matchit, actix) percent-decodes each segment before the handler
//! sees it, so `/orders/o-1` and `/orders/%6F-1` reach the same handler with the same id. A
//! layer that keys on the *raw* path sees two names for one resource — two lock holders in one
//! critical section, two idempotency records for one key. Every palisade layer that keys on a
//! path uses this module: [`PathSegment`] for one decoded segment, [`canonical_path`] for a
//! whole path.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// Bytes re-encoded in a canonical path: everything but RFC 3986's unreserved characters,
/// sub-delims, `:` and `@` (the characters a path segment may carry raw).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// One path segment, percent-decoded as a router decodes it: an error if the decoded bytes
/// are not UTF-8 (axum answers 400 then, so must a layer in front of it).
pub fn decode_segment(raw: &str) -> Result<Cow<'_, str>, KeyError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| KeyError::InvalidPath("a path segment is not UTF-8 once decoded".into()))
}

/// The path in one canonical spelling: each segment percent-decoded, then re-encoded with
/// uppercase escapes for exactly the bytes that need one. Two spellings of one path
/// (`/orders/o-1`, `/orders/%6F-1`, `/orders/%6f%2D1`) give the same string; an encoded slash
/// (`%2F`) stays distinct from a segment boundary, as it is for a router. Bytes that are not
/// UTF-8 are kept (escaped), so this never fails.
pub fn canonical_path(raw: &str) -> Cow<'_, str> {
    if raw.bytes().all(|b| b == b'/' || !needs_work(b)) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    for (i, segment) in raw.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let bytes: Cow<'_, [u8]> = percent_decode_str(segment).into();
        match std::str::from_utf8(&bytes) {
            Ok(text) => out.extend(utf8_percent_encode(text, SEGMENT)),
            Err(_) => out.extend(percent_encoding::percent_encode(&bytes, SEGMENT)),
        }
    }
    Cow::Owned(out)
}

// Bytes a segment may carry raw: unreserved, sub-delims, `:` and `@` (the complement of
// `SEGMENT`).
fn needs_work(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
}

/// The n-th segment of the request path (0-based, empty segments skipped), **percent-decoded**
/// as the router hands it to the handler: `PathSegment::new(1)` names `o-1` on both
/// `/orders/o-1/payments` and `/orders/%6F-1/payments`. A segment that is not UTF-8 once
/// decoded is a [`KeyError::InvalidPath`] (the layer answers 400, as axum's `Path` would).
///
/// ```
/// use palisade_core::key::{KeyExtractor, PathSegment, RequestHead};
///
/// let order = PathSegment::new(1);
/// let raw = http::Request::get("/orders/o-1/payments").body(()).unwrap();
/// let encoded = http::Request::get("/orders/%6F-1/payments").body(()).unwrap();
/// assert_eq!(
///     order.extract(&RequestHead::from(&raw)).unwrap(),
///     order.extract(&RequestHead::from(&encoded)).unwrap(),
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PathSegment(usize);

impl PathSegment {
    /// Segment `index` (0-based).
    pub fn new(index: usize) -> Self {
        PathSegment(index)
    }
}

impl KeyExtractor for PathSegment {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let raw = req
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .nth(self.0)
            .ok_or_else(|| KeyError::InvalidPath(format!("no segment {}", self.0).into()))?;
        Ok(Key::from(decode_segment(raw)?.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(path: &str, index: usize) -> Result<Key, KeyError> {
        let request = http::Request::get(path).body(()).unwrap();
        PathSegment::new(index).extract(&RequestHead::from(&request))
    }

    #[test]
    fn encodings_of_one_segment_are_one_key() {
        // Regression: the raw segment was the lock name, so `%6F-1` escaped order o-1's lock.
        let plain = segment("/orders/o-1/payments", 1).unwrap();
        for path in [
            "/orders/%6F-1/payments",
            "/orders/%6f%2d1/payments",
            "//orders/o-1",
        ] {
            assert_eq!(segment(path, 1).unwrap(), plain, "{path}");
        }
        assert_eq!(segment("/orders/o%2F1", 1).unwrap().to_string(), "o/1");
        assert_ne!(segment("/orders/o-2", 1).unwrap(), plain);
    }

    #[test]
    fn undecodable_or_missing_segments_are_errors() {
        assert!(matches!(
            segment("/orders/%FF", 1),
            Err(KeyError::InvalidPath(_))
        ));
        assert!(matches!(
            segment("/orders", 1),
            Err(KeyError::InvalidPath(_))
        ));
        // Long or unusual decoded text is hashed like any key material.
        let long = format!("/orders/{}", "%41".repeat(200));
        assert!(segment(&long, 1).unwrap().to_string().starts_with(":#"));
    }

    #[test]
    fn canonical_path_is_one_spelling() {
        let canonical = canonical_path("/orders/o-1/payments");
        assert!(matches!(canonical, Cow::Borrowed(_)));
        for path in [
            "/orders/%6F-1/payments",
            "/orders/%6f%2D1/payments",
            "/%6Frders/o-1/payment%73",
        ] {
            assert_eq!(canonical_path(path), canonical, "{path}");
        }
        assert_eq!(canonical_path("/a/o%401"), "/a/o@1");
        assert_eq!(canonical_path("/a/b%2fc"), "/a/b%2Fc");
        assert_eq!(canonical_path("/a/b%2Fc"), canonical_path("/a/b%2fc"));
        assert_ne!(canonical_path("/a/b%2Fc"), canonical_path("/a/b/c"));
        assert_eq!(canonical_path("/a/%ff"), "/a/%FF");
        assert_eq!(canonical_path("/a/%zz"), canonical_path("/a/%25zz"));
        assert_eq!(canonical_path("/a/%C3%A9"), "/a/%C3%A9");
    }
}
