//! What a layer does when its backend (Redis, PostgreSQL) fails: the [`OnBackendError`] policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A backend call that did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No answer within the call timeout (server down, paused, or the network black-holed).
    #[error("backend call timed out after {0:?}")]
    Timeout(Duration),
    /// The backend answered with an error or the connection failed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this layer does not understand (a script from another
    /// version, a key of the wrong type).
    #[error("unexpected backend reply: {0}")]
    Protocol(String),
}

/// Whether requests proceed when the backend cannot decide.
///
/// Decided within the call timeout, so a dead backend costs at most that much latency.
/// Every use is reported as a `tracing` warning and the counter
/// `palisade_backend_errors_total{layer, policy}`. Nothing is remembered: the next request
/// asks the backend again, so recovery is automatic when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    /// Let the request through, undecided (availability first). The default, as Stripe
    /// recommends for rate limiters: a Redis outage should not become an API outage.
    #[default]
    FailOpen,
    /// Reject the request with 503 (protection first): for limits that guard cost or abuse.
    FailClosed,
}

impl OnBackendError {
    /// Reports `error` for `layer` and says whether the request may proceed.
    pub fn apply(self, layer: &'static str, error: &BackendError) -> bool {
        let policy = match self {
            OnBackendError::FailOpen => "fail_open",
            OnBackendError::FailClosed => "fail_closed",
        };
        tracing::warn!(
            target: "palisade::backend",
            layer,
            policy,
            error = %error,
            "backend unavailable; applying on_backend_error policy"
        );
        metrics::counter!("palisade_backend_errors_total", "layer" => layer, "policy" => policy)
            .increment(1);
        self == OnBackendError::FailOpen
    }
}

/// The deadline of a compensation (see [`compensate`]) for calls bounded by `call_timeout`:
/// ten times longer, at least 2 s. A compensation runs in the background, so nobody waits on
/// it, and it must get through the same slow network that made the original call late — a
/// script cache miss (`NOSCRIPT`, then `EVAL`) included.
pub fn compensation_timeout(call_timeout: Duration) -> Duration {
    (call_timeout * 10).max(Duration::from_secs(2))
}

/// Undoes, in the background, a state-changing call whose reply came too late.
///
/// A timeout is an unknown outcome: the call may have happened on the server after the caller
/// stopped waiting (a claim, a lock, a permit nobody will ever release). The caller knows its
/// owner token, so it can undo the call with an **owner-checked** operation — which changes
/// nothing if the call never landed, and never touches anyone else's state. Bound `undo` by
/// [`compensation_timeout`], not by the call's own timeout. `undo` runs once on
/// the current tokio runtime (after the original on the same connection, for a single-connection
/// client); if it fails too, the state expires with its lease, which is the documented bound.
/// Counted in `palisade_backend_compensations_total{layer, outcome}`.
#[cfg(feature = "tokio")]
pub fn compensate<F, T>(layer: &'static str, undo: F)
where
    F: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
    T: Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let outcome = match undo.await {
            Ok(_) => "done",
            Err(error) => {
                tracing::warn!(
                    target: "palisade::backend",
                    layer,
                    %error,
                    "could not undo a call whose reply came too late; it expires with its lease"
                );
                "failed"
            }
        };
        metrics::counter!(
            "palisade_backend_compensations_total",
            "layer" => layer,
            "outcome" => outcome
        )
        .increment(1);
    });
}

/// Undoes a state-changing call unless it is [disarmed](Self::disarm): armed before the call is
/// sent, disarmed once its reply is known. Dropped armed — the call timed out, or the caller's
/// future was dropped while the call was in flight (a client hanging up, a timeout layer) — it
/// runs `undo` in the background through [`compensate`]. One guard covers both ways a reply can
/// be lost.
///
/// ```
/// use palisade_core::{BackendError, backend::Undo};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let undo = Undo::new("lock", || async { Ok::<_, BackendError>(()) /* owner-checked release */ });
/// let reply: Result<i64, BackendError> = Ok(1); // the state-changing call
/// let reply = undo.settle(reply); // known: nothing to undo (a timeout would run it)
/// assert_eq!(reply, Ok(1));
/// # }
/// ```
#[cfg(feature = "tokio")]
pub struct Undo<F, Fut, T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
    T: Send + 'static,
{
    layer: &'static str,
    undo: Option<F>,
}

#[cfg(feature = "tokio")]
impl<F, Fut, T> Undo<F, Fut, T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
    T: Send + 'static,
{
    /// Armed: dropped as it is, it runs `undo`.
    pub fn new(layer: &'static str, undo: F) -> Self {
        Undo {
            layer,
            undo: Some(undo),
        }
    }

    /// The call's reply is known: nothing to undo.
    pub fn disarm(mut self) {
        self.undo = None;
    }

    /// Settles the guard with the call's `reply`: a [`BackendError::Timeout`] leaves the
    /// outcome unknown, so the undo runs; any other reply is known, so it does not. Returns
    /// `reply`.
    pub fn settle<R>(self, reply: Result<R, BackendError>) -> Result<R, BackendError> {
        if !matches!(reply, Err(BackendError::Timeout(_))) {
            self.disarm();
        }
        reply
    }
}

#[cfg(feature = "tokio")]
impl<F, Fut, T> Drop for Undo<F, Fut, T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
    T: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            compensate(self.layer, undo());
        }
    }
}
