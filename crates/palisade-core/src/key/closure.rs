use std::fmt;

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// Keys by a closure over the request head.
///
/// ```
/// use palisade_core::key::{FnKey, Key, KeyExtractor, RequestHead};
///
/// // One bucket per tenant, read from the first path segment.
/// let by_tenant = FnKey::new(|req: &RequestHead<'_>| {
///     let tenant = req.uri.path().trim_start_matches('/').split('/').next().unwrap_or("");
///     Ok(Key::text("tenant", tenant.as_bytes()))
/// });
/// let request = http::Request::get("/acme/orders").body(()).unwrap();
/// assert_eq!(by_tenant.extract(&RequestHead::from(&request)).unwrap().to_string(), "tenant:acme");
/// ```
#[derive(Clone)]
pub struct FnKey<F>(F);

impl<F> FnKey<F>
where
    F: Fn(&RequestHead<'_>) -> Result<Key, KeyError> + Send + Sync + 'static,
{
    /// Keys by `f`.
    pub fn new(f: F) -> Self {
        FnKey(f)
    }
}

impl<F> fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnKey(..)")
    }
}

impl<F> KeyExtractor for FnKey<F>
where
    F: Fn(&RequestHead<'_>) -> Result<Key, KeyError> + Send + Sync + 'static,
{
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (self.0)(req)
    }
}
