//! [`Reservation`]: the slot a service reserved for its next call.

use std::{
    fmt,
    task::{Context, Poll, ready},
};

use crate::semaphore::Semaphore;

/// The slot this service reserved for its next call, from its [`Semaphore`].
///
/// Invariant: `Acquiring` only between a `poll_ready` that returned `Pending` and the next;
/// `Held` and `Refused` only between a `poll_ready` that returned `Ready` and the `call` that
/// takes them. Dropping the reservation drops what it holds, which gives it back (the
/// semaphore's contract).
pub(crate) struct Reservation<M: Semaphore> {
    pub(crate) semaphore: M,
    state: Slot<M>,
}

pub(crate) enum Slot<M: Semaphore> {
    Empty,
    Acquiring(M::Acquisition),
    Held(M::Permit),
    Refused(M::Refusal),
}

impl<M: Semaphore> Reservation<M> {
    pub(crate) fn new(semaphore: M) -> Self {
        Reservation {
            semaphore,
            state: Slot::Empty,
        }
    }

    /// Drives the reservation until it holds a slot or a refusal.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Slot::Empty = self.state {
            self.state = Slot::Acquiring(self.semaphore.acquisition());
        }
        if let Slot::Acquiring(acquisition) = &mut self.state {
            self.state = match ready!(self.semaphore.poll_acquire(acquisition, cx)) {
                Ok(permit) => Slot::Held(permit),
                Err(refusal) => Slot::Refused(refusal),
            };
        }
        Poll::Ready(())
    }

    /// Whether the reservation holds a slot (so the inner service must be readied too).
    pub(crate) fn is_held(&self) -> bool {
        matches!(self.state, Slot::Held(_))
    }

    /// Takes the decided slot or refusal for a call, leaving the reservation empty.
    pub(crate) fn take(&mut self) -> Slot<M> {
        std::mem::replace(&mut self.state, Slot::Empty)
    }
}

impl<M: Semaphore> fmt::Debug for Reservation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            Slot::Empty => "empty",
            Slot::Acquiring(_) => "acquiring",
            Slot::Held(_) => "held",
            Slot::Refused(_) => "refused",
        };
        f.debug_struct("Reservation")
            .field("bulkhead", &self.semaphore.name())
            .field("state", &state)
            .finish()
    }
}
