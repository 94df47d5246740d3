//! [`FleetPermit`]: one fleet-wide slot, renewed while it lives.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use palisade_core::redis::RedisClient;
use tokio::task::JoinHandle;

use super::FleetSemaphore;

/// A fleet-wide slot. Release it with [`release`](Self::release); dropping it stops the
/// renewal and releases it in the background (or the lease expires).
pub struct FleetPermit<C: RedisClient> {
    pub(super) semaphore: FleetSemaphore<C>,
    pub(super) id: String,
    pub(super) lost: Arc<AtomicBool>,
    pub(super) renewer: Option<JoinHandle<()>>,
}

impl<C: RedisClient> FleetPermit<C> {
    /// Whether the lease was lost (the instance stalled past it, or Redis forgot it): another
    /// instance may now hold this slot, so work that must stay within the limit should stop.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Gives the slot back.
    pub async fn release(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(error) = self.semaphore.run("release", &self.id).await {
            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit release failed; its lease will expire");
        }
    }

    /// Stops renewing and leaves the lease to expire, as when the process dies: for tests of
    /// recovery, or a process about to exit abruptly.
    pub fn abandon(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.id.clear();
    }
}

impl<C: RedisClient> Drop for FleetPermit<C> {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let (semaphore, id) = (self.semaphore.clone(), std::mem::take(&mut self.id));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = semaphore.run("release", &id).await;
                });
            }
        }
    }
}

impl<C: RedisClient> fmt::Debug for FleetPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetPermit")
            .field("id", &self.id)
            .field("lost", &self.is_lost())
            .finish()
    }
}
