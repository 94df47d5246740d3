//! [`Semaphore`]: where a bulkhead's slots come from.

use std::task::{Context, Poll};

use palisade_core::Rejection;

/// Where [`BulkheadLayer`](crate::BulkheadLayer) takes the slot each call runs in: one tier of a
/// local [`Pool`](crate::Pool) ([`PoolTier`](crate::PoolTier)) or, with the `redis` feature, a
/// fleet-wide [`FleetSemaphore`](crate::FleetSemaphore).
///
/// The service starts an [`acquisition`](Self::acquisition) in `poll_ready` and polls it until
/// it yields a permit or a refusal; the permit lives as long as the call, and the refusal is
/// answered by `call` without the inner service.
///
/// # Contract
/// - Dropping an acquisition gives back whatever it may already have taken (a queue ticket, a
///   lease whose reply is still unknown): a cancelled `poll_ready` leaks nothing.
/// - Dropping a permit gives its slot back.
/// - `poll_acquire` never hangs: waiting is bounded (a tier's max wait, a backend timeout).
pub trait Semaphore: Clone {
    /// Held while a call runs; dropping it frees the slot.
    type Permit;
    /// Why no permit was granted, answered to the caller.
    type Refusal: Rejection;
    /// An acquisition under way.
    type Acquisition;

    /// Starts taking a slot.
    fn acquisition(&self) -> Self::Acquisition;

    /// Drives `acquisition`; `Ready` once it holds a permit or a refusal. Not polled again after
    /// `Ready`.
    fn poll_acquire(
        &self,
        acquisition: &mut Self::Acquisition,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Permit, Self::Refusal>>;

    /// The bulkhead's name, for metrics and for [`CallTimedOut`](crate::CallTimedOut).
    fn name(&self) -> &str;

    /// The tier's name when the semaphore has tiers.
    fn tier(&self) -> Option<&'static str> {
        None
    }
}
