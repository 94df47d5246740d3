//! When the layer cannot know whether a request's effect happened: [`UnknownOutcome`], and the
//! marks a handler uses to say what it knows ([`NotApplied`]) and to key its effects
//! ([`IdempotencyRecord`]).

use crate::store::RecordKey;

/// What the layer does with a claim when the outcome of its request is **unknown** — the
/// handler may or may not have applied its effect:
///
/// - the request future was dropped after the handler started (client gone, a timeout layer,
///   shutdown);
/// - the handler panicked, or the inner service returned an error;
/// - the response is a 5xx (or a failed gRPC status) without a [`NotApplied`] mark — a 503 after
///   a database write timed out is the classic case: the write may land a moment later;
/// - the response body failed while it was being stored.
///
/// A timeout is an unknown outcome, not a failure: releasing the key there lets the client's
/// retry run the payment a second time while the first one's effect lands. That is why
/// [`KeepClaim`](Self::KeepClaim) is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownOutcome {
    /// Keep the claim until its lease runs out (it is no longer renewed). Retries meanwhile get
    /// 409 with `Retry-After` set to the lease left; after the lease, a retry runs the handler
    /// again — so a handler whose effect must not repeat keys that effect by the
    /// [`IdempotencyRecord`] (a re-run then finds the effect instead of applying it twice:
    /// Stripe's "atomic phases"). A key is blocked for at most one lease after an unknown
    /// outcome: choose the lease with that in mind.
    #[default]
    KeepClaim,
    /// Release the claim at once: the next retry runs the handler again. Only for handlers
    /// whose effects are idempotent on their own (or that have none outside the response).
    Release,
}

/// A response extension by which a handler declares that **nothing was applied**: the layer
/// then releases the claim at once, and a retry with the same key runs again — whatever
/// [`UnknownOutcome`] says. For 5xx answers given before any write (a dependency refused the
/// call, validation of server-side state failed).
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use palisade_idempotency::NotApplied;
///
/// fn upstream_refused() -> Response {
///     let mut response = (http::StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
///     response.extensions_mut().insert(NotApplied);
///     response
/// }
/// # let _ = upstream_refused();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

/// The record a request runs under, in the request extensions of the claim's winner (in axum,
/// read it with `Extension<IdempotencyRecord>`).
///
/// Its [`id`](Self::id) is stable across every retry of one operation (same caller, path and
/// `Idempotency-Key`): key the handler's own effect by it — a unique constraint on the payment
/// row, a `SET NX` of the charge — so a re-run after an unknown outcome finds the effect it
/// already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub(crate) key: RecordKey,
}

impl IdempotencyRecord {
    /// The record's id: 64 hex characters, the same for every retry of the operation.
    pub fn id(&self) -> &str {
        self.key.as_str()
    }
}
