use super::{Key, KeyError, KeyExtractor, RequestHead};

/// The first extractor's key when it has one, else the second's. Built by
/// [`KeyExtractor::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A, B> Or<A, B> {
    /// `first`, falling back to `second`.
    pub fn new(first: A, second: B) -> Self {
        Or { first, second }
    }
}

impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for Or<A, B> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        self.first
            .extract(req)
            .or_else(|_| self.second.extract(req))
    }
}

/// One key for every request: a limit on the whole service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _req: &RequestHead<'_>) -> Result<Key, KeyError> {
        Ok(Key::Global)
    }
}
