//! The fleet's record in Redis as a pure state machine: the twin of `scripts/fleet.lua`. A
//! differential test (`tests/fleet_differential.rs`) runs random operation sequences through
//! both, on both Redis clients, and compares every reply.
//!
//! Two keys: the fleet's state — "open until T" or the recovery marker "closed at T" — and
//! the probe lease (which instance may probe). Each key expires like a Redis key with `PX`:
//! it is gone once the clock is past its expiry. Times are the server's milliseconds.
//!
//! ```
//! use palisade_breaker::fleet::state::{FleetOp, FleetRecord};
//!
//! let mut fleet = FleetRecord::default();
//! let opened = fleet.step(1_000, FleetOp::Open, "a", 5_000);
//! assert_eq!(opened.open_until, 6_000);
//! // Nobody probes while the fleet is open; after that, one instance at a time.
//! assert!(!fleet.step(2_000, FleetOp::Lease, "b", 1_000).holder);
//! assert!(fleet.step(6_000, FleetOp::Lease, "b", 1_000).holder);
//! assert!(!fleet.step(6_001, FleetOp::Lease, "c", 1_000).holder);
//! // b's probe round succeeded: the recovery marker tells everyone.
//! assert!(fleet.step(6_100, FleetOp::Close, "b", 10_000).recovered);
//! ```

/// An operation of the script (`ARGV[1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetOp {
    /// Publish an opening for `ms` (never shortening a longer one); any probe lease goes.
    Open,
    /// The probe round of the lease holder succeeded: leave the recovery marker for `ms`.
    /// Anyone else's close changes nothing.
    Close,
    /// Ask for the probe lease for `ms`: granted only when the fleet is neither open nor
    /// recovered, and nobody holds it.
    Lease,
    /// Read only.
    Read,
}

impl FleetOp {
    /// The script's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetOp::Open => "open",
            FleetOp::Close => "close",
            FleetOp::Lease => "lease",
            FleetOp::Read => "read",
        }
    }
}

/// What the script answers (besides the server time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetReply {
    /// When the fleet's open period ends (0: not open).
    pub open_until: u64,
    /// Whether the calling instance holds the probe lease.
    pub holder: bool,
    /// Whether the last fleet event is a successful probe round (the recovery marker).
    pub recovered: bool,
}

/// The fleet state key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    OpenUntil(u64),
    ClosedAt(u64),
}

/// Both keys, each with its expiry (ms).
///
/// Invariant: a key whose expiry has passed is treated as absent (and dropped at the next
/// step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetRecord {
    state: Option<(Mark, u64)>,
    lease: Option<(String, u64)>,
}

impl FleetRecord {
    /// Runs `op` for instance `me` at `now` with the script's millisecond argument `ms`.
    pub fn step(&mut self, now: u64, op: FleetOp, me: &str, ms: u64) -> FleetReply {
        // A key lives up to and including its expiry millisecond, as in Redis.
        if self.state.is_some_and(|(_, expires)| expires < now) {
            self.state = None;
        }
        if self
            .lease
            .as_ref()
            .is_some_and(|(_, expires)| *expires < now)
        {
            self.lease = None;
        }
        match op {
            FleetOp::Open => {
                let deadline = now + ms;
                if self.open_until(now) < deadline {
                    self.state = Some((Mark::OpenUntil(deadline), now + ms + 1_000));
                }
                self.lease = None;
            }
            FleetOp::Close => {
                if self.holds(me) {
                    self.state = Some((Mark::ClosedAt(now), now + ms));
                    self.lease = None;
                }
            }
            FleetOp::Lease => {
                if self.open_until(now) == 0 && !self.recovered() && self.lease.is_none() {
                    self.lease = Some((me.to_owned(), now + ms));
                }
            }
            FleetOp::Read => {}
        }
        FleetReply {
            open_until: self.open_until(now),
            holder: self.holds(me),
            recovered: self.recovered(),
        }
    }

    /// When the two keys expire (ms): the state key (an opening lives a second past its
    /// period, the recovery marker its own `ms`), and the probe lease. `None`: no such key.
    /// Both are bounded, so a fleet that goes quiet leaves nothing behind.
    pub fn expiries(&self) -> (Option<u64>, Option<u64>) {
        (
            self.state.map(|(_, expires)| expires),
            self.lease.as_ref().map(|(_, expires)| *expires),
        )
    }

    fn open_until(&self, now: u64) -> u64 {
        match self.state {
            Some((Mark::OpenUntil(until), _)) if until > now => until,
            _ => 0,
        }
    }

    fn recovered(&self) -> bool {
        matches!(self.state, Some((Mark::ClosedAt(_), _)))
    }

    fn holds(&self, me: &str) -> bool {
        self.lease.as_ref().is_some_and(|(holder, _)| holder == me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_lives_through_its_expiry_millisecond() {
        let mut fleet = FleetRecord::default();
        fleet.step(0, FleetOp::Lease, "a", 100);
        assert!(
            fleet.step(100, FleetOp::Read, "a", 0).holder,
            "alive at 100"
        );
        assert!(
            !fleet.step(101, FleetOp::Read, "a", 0).holder,
            "gone at 101"
        );
        fleet.step(200, FleetOp::Lease, "a", 100);
        fleet.step(200, FleetOp::Close, "a", 50);
        assert!(fleet.step(250, FleetOp::Read, "b", 0).recovered);
        assert!(!fleet.step(251, FleetOp::Read, "b", 0).recovered);
        let opened = fleet.step(300, FleetOp::Open, "a", 100);
        assert_eq!(opened.open_until, 400);
        assert_eq!(fleet.expiries(), (Some(1_400), None));
        assert_eq!(fleet.step(399, FleetOp::Read, "a", 0).open_until, 400);
        assert_eq!(
            fleet.step(400, FleetOp::Read, "a", 0).open_until,
            0,
            "the period is over"
        );
    }

    #[test]
    fn an_opening_never_shortens_a_longer_one_and_takes_the_lease() {
        let mut fleet = FleetRecord::default();
        fleet.step(0, FleetOp::Lease, "a", 1_000);
        assert_eq!(fleet.step(0, FleetOp::Open, "b", 500).open_until, 500);
        assert!(
            !fleet.step(0, FleetOp::Read, "a", 0).holder,
            "the lease went"
        );
        assert_eq!(fleet.step(100, FleetOp::Open, "c", 100).open_until, 500);
        assert_eq!(fleet.step(100, FleetOp::Open, "c", 900).open_until, 1_000);
        // Only the lease holder's close counts.
        fleet.step(2_000, FleetOp::Close, "c", 10_000);
        assert!(!fleet.step(2_000, FleetOp::Read, "c", 0).recovered);
        assert_eq!(FleetOp::Read.as_str(), "read");
    }
}
