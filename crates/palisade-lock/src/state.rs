//! One lock's record as a pure state machine: who holds it until when, and the last fencing
//! token issued. [`MemoryLock`](crate::MemoryLock) runs it; the Redis scripts
//! (`scripts/acquire.lua`, `extend.lua`, `release.lua`) are its twin, and `fenced_set.lua` is
//! the twin of [`fence_accepts`] — a differential test (`tests/differential.rs`) runs random
//! operation sequences through both, on both Redis clients, and compares every answer.
//!
//! Times are milliseconds on any clock the caller chooses: a holder's lease is valid while
//! `now < until` (Redis' `PX` expiry).
//!
//! ```
//! use palisade_lock::state::{Acquired, LockRecord};
//!
//! let mut lock = LockRecord::default();
//! assert_eq!(lock.acquire("a", 1_000, 0, 0), Acquired::Granted { token: 1 });
//! assert_eq!(lock.acquire("b", 1_000, 400, 0), Acquired::Held { left_ms: 600 });
//! assert!(!lock.release("b", 500)); // not b's
//! assert_eq!(lock.acquire("b", 1_000, 1_000, 0), Acquired::Granted { token: 2 }); // a's lease ran out
//! ```

/// What an acquisition got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock, with its fencing token (greater than every token issued before).
    Granted {
        /// The fencing token.
        token: u64,
    },
    /// Someone else holds it, for this long yet.
    Held {
        /// Milliseconds left on the holder's lease.
        left_ms: u64,
    },
}

/// One lock name's state.
///
/// Invariant: `last_token` never decreases, and a granted token is strictly greater than the
/// one before (and at least the caller's clock floor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockRecord {
    holder: Option<(String, u64)>,
    last_token: u64,
}

impl LockRecord {
    /// The owner whose lease is still valid at `now`, if any.
    pub fn holder(&self, now: u64) -> Option<&str> {
        match &self.holder {
            Some((owner, until)) if now < *until => Some(owner),
            _ => None,
        }
    }

    /// The last fencing token issued.
    pub fn last_token(&self) -> u64 {
        self.last_token
    }

    /// Takes the lock for `owner` with a lease of `ttl_ms` from `now`, unless a valid lease is
    /// held. The token is `max(last token + 1, clock_floor)`: the Redis script passes the
    /// server time in µs, so tokens stay above earlier ones even after the counter is lost;
    /// memory passes 0.
    pub fn acquire(&mut self, owner: &str, ttl_ms: u64, now: u64, clock_floor: u64) -> Acquired {
        if let Some((_, until)) = &self.holder
            && now < *until
        {
            return Acquired::Held {
                left_ms: until - now,
            };
        }
        let token = (self.last_token + 1).max(clock_floor);
        self.last_token = token;
        self.holder = Some((owner.to_owned(), now + ttl_ms));
        Acquired::Granted { token }
    }

    /// Extends `owner`'s lease to `ttl_ms` from `now`: false when the lock is not (or no
    /// longer) `owner`'s.
    pub fn extend(&mut self, owner: &str, ttl_ms: u64, now: u64) -> bool {
        if self.holder(now) != Some(owner) {
            return false;
        }
        self.holder = Some((owner.to_owned(), now + ttl_ms));
        true
    }

    /// Releases the lock if it is still `owner`'s at `now`.
    pub fn release(&mut self, owner: &str, now: u64) -> bool {
        if self.holder(now) != Some(owner) {
            return false;
        }
        self.holder = None;
        true
    }
}

/// Whether a fenced resource whose last accepted write carried `last` accepts a write with
/// `token`: only a strictly newer token.
pub fn fence_accepts(last: u64, token: u64) -> bool {
    token > last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_valid_until_its_last_millisecond() {
        let mut lock = LockRecord::default();
        assert_eq!(lock.acquire("a", 100, 0, 0), Acquired::Granted { token: 1 });
        assert_eq!(lock.holder(99), Some("a"));
        assert_eq!(lock.acquire("b", 100, 99, 0), Acquired::Held { left_ms: 1 });
        assert_eq!(lock.holder(100), None);
        assert!(!lock.extend("a", 100, 100), "expired: not extended");
        assert!(!lock.release("a", 100), "expired: nothing to release");
    }

    #[test]
    fn only_the_owner_extends_or_releases() {
        let mut lock = LockRecord::default();
        lock.acquire("a", 100, 0, 0);
        assert!(!lock.extend("b", 1_000, 50));
        assert!(lock.extend("a", 1_000, 50));
        assert_eq!(
            lock.acquire("b", 100, 500, 0),
            Acquired::Held { left_ms: 550 }
        );
        assert!(!lock.release("b", 500));
        assert!(lock.release("a", 500));
        assert!(!lock.release("a", 500), "released once");
        assert_eq!(
            lock.acquire("b", 100, 500, 0),
            Acquired::Granted { token: 2 }
        );
    }

    #[test]
    fn tokens_grow_from_the_counter_or_the_clock_floor() {
        let mut lock = LockRecord::default();
        assert_eq!(
            lock.acquire("a", 10, 0, 1_000),
            Acquired::Granted { token: 1_000 }
        );
        assert_eq!(
            lock.acquire("a", 10, 10, 0),
            Acquired::Granted { token: 1_001 }
        );
        assert_eq!(
            lock.acquire("a", 10, 20, 1_001),
            Acquired::Granted { token: 1_002 }
        );
        assert_eq!(lock.last_token(), 1_002);
    }

    #[test]
    fn a_fence_accepts_only_newer_tokens() {
        assert!(fence_accepts(0, 1));
        assert!(!fence_accepts(5, 5));
        assert!(!fence_accepts(5, 4));
        assert!(fence_accepts(5, 6));
    }
}
