//! Reading the `Idempotency-Key` request header.
//!
//! The IETF draft (`draft-ietf-httpapi-idempotency-key-header`) defines the value as a
//! Structured Field *String* — `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`. Many
//! clients (Stripe's among them) send a bare token instead. Both are accepted; either way the
//! key must be 1–255 visible ASCII characters.

use http::HeaderMap;

/// The request header this crate reads.
pub const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// The response header marking a replayed response.
pub const IDEMPOTENT_REPLAYED: http::HeaderName =
    http::HeaderName::from_static("idempotent-replayed");

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// Why a request's `Idempotency-Key` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// The header is absent.
    #[error("the Idempotency-Key header is missing")]
    Missing,
    /// The header is present but unusable.
    #[error("the Idempotency-Key header is malformed: {0}")]
    Malformed(&'static str),
}

/// Reads the idempotency key from `headers`: `Ok(None)` when absent.
///
/// ```
/// use palisade_idempotency::header::{KeyProblem, idempotency_key};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("idempotency-key", "\"order-7:create\"".parse().unwrap());
/// assert_eq!(idempotency_key(&headers), Ok(Some("order-7:create".to_owned())));
///
/// headers.insert("idempotency-key", "bare-token-1".parse().unwrap());
/// assert_eq!(idempotency_key(&headers), Ok(Some("bare-token-1".to_owned())));
///
/// headers.insert("idempotency-key", "\"\"".parse().unwrap());
/// assert!(matches!(idempotency_key(&headers), Err(KeyProblem::Malformed(_))));
/// ```
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, KeyProblem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyProblem::Malformed("the header appears more than once"));
    }
    parse(value.as_bytes()).map(Some)
}

/// Parses one header value: an sf-string (`"…"`, with `\"` and `\\` escapes) or a bare token.
pub fn parse(raw: &[u8]) -> Result<String, KeyProblem> {
    let raw = trim(raw);
    let key = if raw.first() == Some(&b'"') {
        unquote(raw)?
    } else {
        raw.to_vec()
    };
    if key.is_empty() {
        return Err(KeyProblem::Malformed("the key is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyProblem::Malformed(
            "the key is longer than 255 characters",
        ));
    }
    if !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(KeyProblem::Malformed(
            "the key must be visible ASCII characters without spaces",
        ));
    }
    // All bytes are ASCII graphic, so this cannot fail.
    String::from_utf8(key).map_err(|_| KeyProblem::Malformed("the key is not ASCII"))
}

fn trim(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| *b != b' ' && *b != b'\t');
    let end = raw.iter().rposition(|b| *b != b' ' && *b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &raw[s..=e],
        _ => &[],
    }
}

// RFC 8941 §4.2.5: a string is DQUOTE *chr DQUOTE, chr = unescaped / escaped ("\\" or "\""),
// and nothing may follow the closing quote (parameters are not allowed on this header).
fn unquote(raw: &[u8]) -> Result<Vec<u8>, KeyProblem> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw[1..].iter();
    loop {
        match bytes.next() {
            None => return Err(KeyProblem::Malformed("unterminated quoted string")),
            Some(b'"') => break,
            Some(b'\\') => match bytes.next() {
                Some(c @ (b'"' | b'\\')) => out.push(*c),
                _ => return Err(KeyProblem::Malformed("invalid escape in quoted string")),
            },
            Some(c) if (0x20..0x7f).contains(c) => out.push(*c),
            Some(_) => {
                return Err(KeyProblem::Malformed(
                    "the key must be visible ASCII characters without spaces",
                ));
            }
        }
    }
    if bytes.next().is_some() {
        return Err(KeyProblem::Malformed(
            "unexpected characters after the quoted string",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_strings_and_tokens() {
        assert_eq!(parse(b"\"abc\"").unwrap(), "abc");
        assert_eq!(parse(b"  abc  ").unwrap(), "abc");
        assert_eq!(parse(b"\"a\\\"b\\\\c\"").unwrap(), "a\"b\\c");
        assert_eq!(parse(&[b'k'; 255]).unwrap().len(), 255);
    }

    #[test]
    fn rejects_bad_keys() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"   ",
            b"\"abc",
            b"\"abc\";p=1",
            b"\"a\\nb\"",
            b"a b",
            b"\"a b\"",
            b"caf\xc3\xa9",
            b"\x01",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'k'; 256]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_accepts_only_visible_ascii(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(key) = parse(&raw) {
                proptest::prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
                proptest::prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}
