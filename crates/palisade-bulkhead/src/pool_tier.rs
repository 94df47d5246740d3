//! [`PoolTier`]: one tier of a local [`Pool`] as a [`Semaphore`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::time::Sleep;

use crate::{
    Acquire, Permit, Pool,
    rejection::{BulkheadFull, Reason},
    semaphore::Semaphore,
    tier::TierId,
};

/// One tier of a [`Pool`]: what [`BulkheadLayer::new`](crate::BulkheadLayer::new) admits calls
/// through. A call that finds no slot waits in the tier's bounded FIFO queue for at most the
/// tier's max wait.
#[derive(Debug, Clone)]
pub struct PoolTier {
    pool: Pool,
    tier: TierId,
}

impl PoolTier {
    /// Tier `tier` of `pool`.
    ///
    /// # Panics
    /// If the pool has no such tier (a `TierId` from another pool's configuration).
    pub fn new(pool: Pool, tier: TierId) -> Self {
        assert!(
            tier.0 < pool.config().tiers.len(),
            "no tier {} in bulkhead `{}`",
            tier.0,
            pool.config().name
        );
        PoolTier { pool, tier }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The tier.
    pub fn tier_id(&self) -> TierId {
        self.tier
    }
}

/// A [`PoolTier`] acquisition: not yet asked, or waiting in the queue under a ticket (given
/// back on drop).
#[derive(Debug)]
pub struct PoolAcquisition {
    pool: Pool,
    waiting: Option<(u64, Pin<Box<Sleep>>)>,
}

impl Drop for PoolAcquisition {
    fn drop(&mut self) {
        if let Some((ticket, _)) = self.waiting.take() {
            // A grant racing with the drop is handed back by `cancel`.
            self.pool.cancel(ticket);
        }
    }
}

impl Semaphore for PoolTier {
    type Permit = Permit;
    type Refusal = BulkheadFull;
    type Acquisition = PoolAcquisition;

    fn acquisition(&self) -> PoolAcquisition {
        PoolAcquisition {
            pool: self.pool.clone(),
            waiting: None,
        }
    }

    fn poll_acquire(
        &self,
        acquisition: &mut PoolAcquisition,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Permit, BulkheadFull>> {
        let reason = match &mut acquisition.waiting {
            None => match self.pool.acquire_or_queue(self.tier) {
                Acquire::Acquired(permit) => return Poll::Ready(Ok(permit)),
                Acquire::Full => Reason::QueueFull,
                Acquire::Queued(ticket) => {
                    let max_wait = self.pool.config().tiers[self.tier.0].max_wait;
                    acquisition.waiting = Some((ticket, Box::pin(tokio::time::sleep(max_wait))));
                    return self.poll_acquire(acquisition, cx);
                }
            },
            Some((ticket, deadline)) => {
                let ticket = *ticket;
                if let Poll::Ready(permit) = self.pool.poll_ticket(ticket, cx) {
                    acquisition.waiting = None;
                    return Poll::Ready(Ok(permit));
                }
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // A grant racing with the deadline is handed back by `cancel`.
                acquisition.waiting = None;
                self.pool.cancel(ticket);
                Reason::WaitTimedOut
            }
        };
        Poll::Ready(Err(self.refusal(reason)))
    }

    fn name(&self) -> &str {
        self.pool.config().name
    }

    fn tier(&self) -> Option<&'static str> {
        Some(self.pool.config().tiers[self.tier.0].name)
    }
}

impl PoolTier {
    fn refusal(&self, reason: Reason) -> BulkheadFull {
        let config = self.pool.config();
        let label = match reason {
            Reason::QueueFull => "queue_full",
            Reason::WaitTimedOut => "wait_timed_out",
        };
        metrics::counter!("palisade_bulkhead_rejections_total", "bulkhead" => config.name, "reason" => label)
            .increment(1);
        BulkheadFull {
            bulkhead: config.name,
            tier: config.tiers[self.tier.0].name,
            reason,
        }
    }
}
