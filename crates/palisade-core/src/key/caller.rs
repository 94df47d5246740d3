//! Keys taken once per request: [`CallerKey`] carries the caller's key in the request
//! extensions, [`Caller`] reads it back.

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// The caller's key, computed once — by the authentication layer that recognised the caller —
/// and carried in the request extensions, so every later layer (rate limit per caller,
/// idempotency scope, logs) uses the same value without reading a header again or hashing
/// it again. Build it with [`CallerKey::from_request`] from any extractor, or from the
/// identity your authentication produced.
///
/// ```
/// use palisade_core::key::{Caller, CallerKey, Header, KeyExtractor, RequestHead};
///
/// let mut request = http::Request::builder().header("x-api-key", "k-1").body(()).unwrap();
/// // In the authentication layer: once.
/// let caller = CallerKey::from_request(&Header::new("x-api-key"), &request).unwrap();
/// request.extensions_mut().insert(caller);
/// // In every layer after it: a clone, the same key the header extractor gives.
/// let key = Caller.extract(&RequestHead::from(&request)).unwrap();
/// assert_eq!(key.to_string(), "header:k-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerKey(pub Key);

impl CallerKey {
    /// The caller's key, taken from `request` by `extractor`.
    pub fn from_request<E: KeyExtractor + ?Sized, B>(
        extractor: &E,
        request: &http::Request<B>,
    ) -> Result<CallerKey, KeyError> {
        extractor
            .extract(&RequestHead::from(request))
            .map(CallerKey)
    }
}

/// Keys by the [`CallerKey`] an earlier layer put in the request extensions (a clone: no
/// header read, no hashing). Without one, [`KeyError::MissingPrincipal`]: the layer that sets
/// it must run first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller;

impl KeyExtractor for Caller {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        req.extensions
            .get::<CallerKey>()
            .map(|caller| caller.0.clone())
            .ok_or(KeyError::MissingPrincipal("CallerKey"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Header;

    #[test]
    fn the_carried_key_is_the_extractor_s_key_and_its_absence_is_an_error() {
        let mut request = http::Request::builder()
            // Long enough to be hashed: the carried key is the hashed one.
            .header("x-api-key", "k".repeat(300))
            .body(())
            .unwrap();
        let header = Header::new("x-api-key");
        assert_eq!(
            Caller.extract(&RequestHead::from(&request)),
            Err(KeyError::MissingPrincipal("CallerKey"))
        );
        let caller = CallerKey::from_request(&header, &request).unwrap();
        request.extensions_mut().insert(caller);
        assert_eq!(
            Caller.extract(&RequestHead::from(&request)),
            header.extract(&RequestHead::from(&request))
        );
    }
}
