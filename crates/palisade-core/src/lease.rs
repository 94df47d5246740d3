//! [`Lease`]: when the holder of a lease must consider it gone.
//!
//! A server expires a lease `ttl` after it *received* the call that granted or extended it,
//! which is no earlier than when the holder *sent* that call. So the holder counts from its
//! send time, and gives up a [safety margin](safety_margin) early for the difference in clock
//! rates: it then stops before the server can hand the lease to someone else — whatever calls
//! are still pending. Locks and fleet permits both keep one.

use std::time::Duration;

use tokio::time::Instant;

/// The margin by which a holder gives its lease up early: 1 % of the TTL plus 2 ms, for the
/// difference in clock rates between this process and the server (Redlock's drift term).
pub fn safety_margin(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// A lease of `ttl`, counted from when the call that granted or last extended it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease's length on the server.
    pub ttl: Duration,
    /// When the last successful grant or extension was sent.
    pub sent_at: Instant,
}

impl Lease {
    /// A lease granted by a call sent at `sent_at`.
    pub fn new(ttl: Duration, sent_at: Instant) -> Lease {
        Lease { ttl, sent_at }
    }

    /// A successful extension sent at `sent_at`.
    pub fn extended(self, sent_at: Instant) -> Lease {
        Lease { sent_at, ..self }
    }

    /// When the holder must consider the lease gone: a pure function of the lease.
    pub fn lost_at(self) -> Instant {
        self.sent_at + self.ttl.saturating_sub(safety_margin(self.ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lost_before_the_server_expires_it() {
        let sent = Instant::now();
        let lease = Lease::new(Duration::from_secs(10), sent);
        assert_eq!(lease.lost_at(), sent + Duration::from_millis(9_898));
        let later = sent + Duration::from_secs(3);
        assert_eq!(
            lease.extended(later).lost_at(),
            later + Duration::from_millis(9_898)
        );
        assert_eq!(
            safety_margin(Duration::from_millis(100)),
            Duration::from_millis(3)
        );
    }
}
