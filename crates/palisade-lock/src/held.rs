//! [`HeldLock`]: what the protected work (or handler) knows of its lock.

use std::sync::Arc;

#[cfg(feature = "axum")]
use http::StatusCode;
use tokio_util::sync::CancellationToken;

/// What the holder of a lock needs to know: its name, its fencing token, and a token cancelled
/// if the lock is lost. [`Locker::run`](crate::Locker::run) hands it to the protected work; [`LockLayer`](crate::LockLayer) puts it in
/// the request extensions (and, with the `axum` feature, it is an axum extractor).
#[derive(Debug, Clone)]
pub struct HeldLock {
    /// The lock's name.
    pub name: Arc<str>,
    /// The fencing token, where the backend issues them.
    pub fencing_token: Option<u64>,
    /// Cancelled when the lock is lost while the request runs.
    pub lost: CancellationToken,
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HeldLock {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<HeldLock>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no lock held: add LockLayer to this route",
        ))
    }
}
