//! What makes two requests "the same request": the fingerprint stored with a key.
//!
//! A key reused with a different fingerprint is refused with 422, so a client bug that sends
//! two different payments under one key never gets the first payment's answer for the second.

use http::{HeaderName, request::Parts};
use palisade_core::key::path::canonical_path;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::json;

/// How the request fingerprint is computed: SHA-256 over the method, the path (in its
/// [canonical spelling](palisade_core::key::path::canonical_path)) and query, any
/// selected headers, and the body (its bytes, or its canonical JSON form).
///
/// ```
/// use palisade_idempotency::Fingerprint;
///
/// // Body as canonical JSON (key order and whitespace do not matter), plus a header.
/// let fingerprint = Fingerprint::default()
///     .canonical_json()
///     .with_header(http::HeaderName::from_static("x-tenant"));
/// let (parts, ()) = http::Request::post("/payments").body(()).unwrap().into_parts();
/// let a = fingerprint.compute(&parts, br#"{"amount": 5, "currency": "EUR"}"#);
/// let b = fingerprint.compute(&parts, br#"{"currency":"EUR","amount":5}"#);
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Fingerprint {
    headers: Vec<HeaderName>,
    canonical_json: bool,
    ignore_query: bool,
}

impl Fingerprint {
    /// Adds a request header to the fingerprint (its absence counts too).
    pub fn with_header(mut self, name: HeaderName) -> Self {
        self.headers.push(name);
        self
    }

    /// Hashes the body as canonical JSON — object keys sorted, no insignificant whitespace —
    /// when it parses as JSON (otherwise its bytes).
    pub fn canonical_json(mut self) -> Self {
        self.canonical_json = true;
        self
    }

    /// Leaves the query string out (by default `/pay?x=1` and `/pay?x=2` differ).
    pub fn ignore_query(mut self) -> Self {
        self.ignore_query = true;
        self
    }

    /// The fingerprint of a request: 64 lowercase hex characters.
    pub fn compute(&self, parts: &Parts, body: &[u8]) -> String {
        let mut hash = Sha256::new();
        let field = |hash: &mut Sha256, bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(&mut hash, parts.method.as_str().as_bytes());
        // The path in its canonical spelling: `/orders/%6F-1` is `/orders/o-1`.
        field(&mut hash, canonical_path(parts.uri.path()).as_bytes());
        if !self.ignore_query {
            hash.update(b"?");
            field(&mut hash, parts.uri.query().unwrap_or("").as_bytes());
        }
        for name in &self.headers {
            field(&mut hash, name.as_str().as_bytes());
            for value in parts.headers.get_all(name) {
                field(&mut hash, value.as_bytes());
            }
            hash.update([0xff]);
        }
        match self.canonical_json.then(|| canonical(body)).flatten() {
            Some(json) => field(&mut hash, json.as_bytes()),
            None => field(&mut hash, body),
        }
        hex(&hash.finalize())
    }
}

/// The body as canonical JSON, or `None` when it is not JSON.
fn canonical(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut out = String::with_capacity(body.len());
    json::write_sorted(&value, json::CANONICAL, &mut out);
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        http::Request::post(uri)
            .header("x-tenant", "a")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn every_part_counts() {
        let f = Fingerprint::default();
        let base = f.compute(&parts("/p?x=1"), b"{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, f.compute(&parts("/p?x=2"), b"{}"));
        assert_ne!(base, f.compute(&parts("/q?x=1"), b"{}"));
        assert_ne!(base, f.compute(&parts("/p?x=1"), b"{ }"));
        let mut put = parts("/p?x=1");
        put.method = http::Method::PUT;
        assert_ne!(base, f.compute(&put, b"{}"));
        let q = Fingerprint::default().ignore_query();
        assert_eq!(
            q.compute(&parts("/p?x=1"), b""),
            q.compute(&parts("/p?x=2"), b"")
        );
        let h = Fingerprint::default().with_header(HeaderName::from_static("x-tenant"));
        let mut other = parts("/p");
        other.headers.insert("x-tenant", "b".parse().unwrap());
        assert_ne!(h.compute(&parts("/p"), b""), h.compute(&other, b""));
    }

    #[test]
    fn canonical_json_ignores_order_and_space_but_not_values() {
        let f = Fingerprint::default().canonical_json();
        let p = parts("/p");
        let a = f.compute(&p, br#"{"b": [1, {"y": 2, "x": 1}], "a": "\u00e9"}"#);
        let b = f.compute(&p, "{\"a\":\"é\",\"b\":[1,{\"x\":1,\"y\":2}]}".as_bytes());
        assert_eq!(a, b);
        assert_ne!(a, f.compute(&p, br#"{"a":"e","b":[1,{"x":1,"y":2}]}"#));
        // Not JSON: hashed as bytes, no error.
        assert_ne!(f.compute(&p, b"not json"), f.compute(&p, b"not  json"));
    }
}
