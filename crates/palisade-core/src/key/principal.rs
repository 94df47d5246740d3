use std::{fmt, marker::PhantomData};

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// Keys by an authenticated principal that an earlier layer put in the request extensions.
///
/// ```
/// use palisade_core::key::{KeyExtractor, Principal, RequestHead};
///
/// #[derive(Clone)]
/// struct UserId(u64);
/// impl std::fmt::Display for UserId {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { self.0.fmt(f) }
/// }
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(UserId(42));
/// let key = Principal::<UserId>::new("user").extract(&RequestHead::from(&request)).unwrap();
/// assert_eq!(key.to_string(), "user:42");
/// ```
pub struct Principal<T> {
    label: &'static str,
    _principal: PhantomData<fn() -> T>,
}

impl<T> Principal<T> {
    /// Keys by the `T` in the request extensions, written as `label:<T as Display>`.
    pub fn new(label: &'static str) -> Self {
        Principal {
            label,
            _principal: PhantomData,
        }
    }
}

impl<T> Clone for Principal<T> {
    fn clone(&self) -> Self {
        Principal::new(self.label)
    }
}

impl<T> fmt::Debug for Principal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("label", &self.label)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: fmt::Display + Send + Sync + 'static> KeyExtractor for Principal<T> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let principal = req
            .extensions
            .get::<T>()
            .ok_or(KeyError::MissingPrincipal(std::any::type_name::<T>()))?;
        Ok(Key::text(self.label, principal.to_string().as_bytes()))
    }
}
