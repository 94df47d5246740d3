//! The fleet semaphore as a pure state machine: the twin of `scripts/semaphore.lua`, with time
//! as a parameter. `tests/fleet_differential.rs` runs random sequences through both.

use std::collections::BTreeMap;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Take a slot for this lease id (granted again if the id already holds one).
    Acquire,
    /// Extend this id's live lease (an expired one may already be someone else's slot).
    Renew,
    /// Give this id's slot back.
    Release,
}

/// What a step answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Whether the acquisition or renewal was granted (always `false` for a release).
    pub granted: bool,
    /// Live leases after the step.
    pub holders: u32,
    /// Until the earliest live lease ends, ms (0: none).
    pub wait_ms: u64,
}

/// The live leases of one semaphore: lease id → end (ms). Invariant: never more than the
/// capacity any acquisition was checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    ends: BTreeMap<String, u64>,
}

impl Leases {
    /// No lease.
    pub fn new() -> Self {
        Self::default()
    }

    /// One step at `now` (ms): leases that ended at or before `now` are dropped first.
    pub fn step(&mut self, now: u64, op: Op, id: &str, capacity: u32, lease_ms: u64) -> Reply {
        self.ends.retain(|_, end| *end > now);
        let granted = match op {
            Op::Acquire if self.ends.contains_key(id) => true,
            Op::Acquire if self.ends.len() < capacity as usize => {
                self.ends.insert(id.to_owned(), now + lease_ms);
                true
            }
            Op::Acquire => false,
            Op::Renew => match self.ends.get_mut(id) {
                Some(end) => {
                    *end = now + lease_ms;
                    true
                }
                None => false,
            },
            Op::Release => {
                self.ends.remove(id);
                false
            }
        };
        let wait_ms = self.ends.values().min().map_or(0, |end| end - now);
        Reply {
            granted,
            holders: self.ends.len() as u32,
            wait_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_expiry_renewal_and_release() {
        let mut leases = Leases::new();
        let take = |l: &mut Leases, now, id| l.step(now, Op::Acquire, id, 2, 100);
        let first = Leases::new().step(7, Op::Acquire, "x", 2, 100);
        assert_eq!(
            (first.granted, first.holders, first.wait_ms),
            (true, 1, 100)
        );
        assert!(take(&mut leases, 0, "a").granted);
        assert!(take(&mut leases, 10, "b").granted);
        let full = take(&mut leases, 20, "c");
        assert_eq!((full.granted, full.holders, full.wait_ms), (false, 2, 80));
        assert!(
            take(&mut leases, 20, "a").granted,
            "a holder asking again keeps its slot"
        );
        assert!(leases.step(50, Op::Renew, "a", 2, 100).granted);
        // "b" ends at 110 exactly: gone at 110, so "c" gets its slot.
        assert!(take(&mut leases, 110, "c").granted);
        assert!(
            !leases.step(110, Op::Renew, "b", 2, 100).granted,
            "an ended lease is not renewed"
        );
        let released = leases.step(120, Op::Release, "a", 2, 100);
        assert_eq!((released.granted, released.holders), (false, 1));
    }
}
