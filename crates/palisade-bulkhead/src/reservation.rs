//! [`Reservation`]: the slot a service reserved for its next call.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::time::Sleep;

use crate::{Acquire, Permit, Pool, rejection::Reason};

/// The slot this service reserved for its next call.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) pool: Pool,
    pub(crate) tier: usize,
    pub(crate) state: Slot,
}

#[derive(Debug)]
pub(crate) enum Slot {
    Empty,
    Waiting {
        ticket: u64,
        deadline: Pin<Box<Sleep>>,
    },
    Held(Permit),
    Refused(Reason),
}

impl Reservation {
    pub(crate) fn new(pool: Pool, tier: usize) -> Self {
        Reservation {
            pool,
            tier,
            state: Slot::Empty,
        }
    }

    /// Drives the reservation until it holds a slot or a refusal.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                Slot::Empty => {
                    self.state = match self.pool.acquire_or_queue(self.tier) {
                        Acquire::Acquired(permit) => Slot::Held(permit),
                        Acquire::Queued(ticket) => Slot::Waiting {
                            ticket,
                            deadline: Box::pin(tokio::time::sleep(
                                self.pool.config().tiers[self.tier].max_wait,
                            )),
                        },
                        Acquire::Full => Slot::Refused(Reason::QueueFull),
                    };
                }
                Slot::Waiting { ticket, deadline } => {
                    let ticket = *ticket;
                    if let Poll::Ready(permit) = self.pool.poll_ticket(ticket, cx) {
                        self.state = Slot::Held(permit);
                    } else if deadline.as_mut().poll(cx).is_ready() {
                        // A grant racing with the deadline is handed back by `cancel`.
                        self.pool.cancel(ticket);
                        self.state = Slot::Refused(Reason::WaitTimedOut);
                    } else {
                        return Poll::Pending;
                    }
                }
                Slot::Held(_) | Slot::Refused(_) => return Poll::Ready(()),
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Slot::Waiting { ticket, .. } = self.state {
            self.pool.cancel(ticket);
        }
    }
}
