use http::HeaderName;

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// Keys by a request header, such as an API key.
///
/// The value is taken as bytes: a value with bytes outside printable ASCII, or longer than
/// [`MAX_KEY_MATERIAL`](super::MAX_KEY_MATERIAL), is hashed rather than rejected, so hostile
/// values cost a fixed amount of memory and never reach logs verbatim. A missing header is a
/// [`KeyError::MissingHeader`]; combine with [`or`](KeyExtractor::or) to fall back.
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
    name_str: &'static str,
}

impl Header {
    /// Keys by the header `name`.
    ///
    /// # Panics
    /// If `name` is not a valid header name — a programming error caught at start-up.
    pub fn new(name: &'static str) -> Self {
        Header {
            name: HeaderName::from_static(name),
            name_str: name,
        }
    }

    /// The key of a value of this header — what [`extract`](KeyExtractor::extract) gives —
    /// for a caller that has read the header already (to authenticate it, say).
    pub fn key_of(value: &http::HeaderValue) -> Key {
        Key::text("header", value.as_bytes())
    }
}

impl KeyExtractor for Header {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        match req.headers.get(&self.name) {
            Some(value) if !value.is_empty() => Ok(Header::key_of(value)),
            _ => Err(KeyError::MissingHeader(self.name_str)),
        }
    }
}
