//! Sliding windows of call outcomes, updated with atomics only.
//!
//! Both windows forget: a count window of N keeps exactly the last N outcomes (a ring — a new
//! call overwrites the oldest slot and subtracts what it held), and a time window keeps one
//! aggregate per second and ignores seconds older than the window. A long healthy history
//! therefore cannot hide a fresh failure burst. Totals are kept as signed counters read with a
//! clamp: concurrent updates may leave them off by the calls in flight, never wrapped.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};

use crate::{decide::Counts, policy::Window};

/// One call's outcome, as bits.
pub(crate) const FILLED: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const SLOW: u8 = 4;

pub(crate) enum Outcomes {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Outcomes {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => Outcomes::Count(CountWindow::new(n)),
            Window::Time(n) => Outcomes::Time(TimeWindow::new(n)),
        }
    }

    /// Records one outcome (`FAILED` / `SLOW` bits) at `second` (for time windows).
    pub(crate) fn record(&self, bits: u8, second: u64) {
        match self {
            Outcomes::Count(w) => w.record(bits),
            Outcomes::Time(w) => w.record(bits, second),
        }
    }

    pub(crate) fn counts(&self, second: u64) -> Counts {
        match self {
            Outcomes::Count(w) => w.counts(),
            Outcomes::Time(w) => w.counts(second),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Outcomes::Count(w) => w.clear(),
            Outcomes::Time(w) => w.clear(),
        }
    }
}

/// The last N outcomes in a ring of bytes.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    fn record(&self, bits: u8) {
        let i = (self.next.fetch_add(1, Relaxed) % self.slots.len() as u64) as usize;
        let old = self.slots[i].swap(bits | FILLED, Relaxed);
        // The slot's previous outcome leaves the window as this one enters.
        let delta = |mask: u8| i64::from(bits & mask != 0) - i64::from(old & mask != 0);
        if old & FILLED == 0 {
            self.calls.fetch_add(1, Relaxed);
        }
        if let d @ (1 | -1) = delta(FAILED) {
            self.failures.fetch_add(d, Relaxed);
        }
        if let d @ (1 | -1) = delta(SLOW) {
            self.slow.fetch_add(d, Relaxed);
        }
    }

    /// Calls in the window.
    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Relaxed).clamp(0, self.slots.len() as i64) as u32
    }

    fn counts(&self) -> Counts {
        let n = self.slots.len() as i64;
        let read = |c: &AtomicI64| c.load(Relaxed).clamp(0, n) as u32;
        Counts {
            calls: read(&self.calls),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Relaxed);
        }
        self.calls.store(0, Relaxed);
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

/// One aggregate per second; `stamp` is the second it holds plus one (0: empty).
struct Bucket {
    stamp: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

/// The outcomes of the last N seconds: O(1) memory per second, no record per call.
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    fn new(seconds: u32) -> Self {
        TimeWindow {
            buckets: (0..seconds)
                .map(|_| Bucket {
                    stamp: AtomicU64::new(0),
                    calls: AtomicI64::new(0),
                    failures: AtomicI64::new(0),
                    slow: AtomicI64::new(0),
                })
                .collect(),
        }
    }

    fn record(&self, bits: u8, second: u64) {
        let bucket = &self.buckets[(second % self.buckets.len() as u64) as usize];
        let stamp = bucket.stamp.load(Relaxed);
        if stamp != second + 1
            && stamp < second + 1
            && bucket
                .stamp
                .compare_exchange(stamp, second + 1, Relaxed, Relaxed)
                .is_ok()
        {
            // This thread moved the bucket to a new second: it starts empty.
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
        }
        bucket.calls.fetch_add(1, Relaxed);
        if bits & FAILED != 0 {
            bucket.failures.fetch_add(1, Relaxed);
        }
        if bits & SLOW != 0 {
            bucket.slow.fetch_add(1, Relaxed);
        }
    }

    fn counts(&self, second: u64) -> Counts {
        let oldest = (second + 1).saturating_sub(self.buckets.len() as u64);
        let mut counts = Counts::default();
        for b in self.buckets.iter() {
            let stamp = b.stamp.load(Relaxed);
            if stamp == 0 || stamp - 1 < oldest || stamp - 1 > second {
                continue;
            }
            let read = |c: &AtomicI64| c.load(Relaxed).max(0) as u32;
            counts.calls += read(&b.calls);
            counts.failures += read(&b.failures);
            counts.slow += read(&b.slow);
        }
        counts
    }

    fn clear(&self) {
        for b in self.buckets.iter() {
            b.stamp.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let w = CountWindow::new(4);
        for _ in 0..1000 {
            w.record(0);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 0,
                slow: 0
            }
        );
        for _ in 0..3 {
            w.record(FAILED);
        }
        assert_eq!(
            w.counts().failures,
            3,
            "a long healthy run does not dilute a burst"
        );
        w.record(FAILED | SLOW);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 4,
                slow: 1
            }
        );
        w.record(0);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 3,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let w = TimeWindow::new(3);
        w.record(FAILED, 10);
        w.record(0, 11);
        w.record(0, 12);
        assert_eq!(
            w.counts(12),
            Counts {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(
            w.counts(13),
            Counts {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        w.record(SLOW, 13);
        assert_eq!(
            w.counts(13),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(100), Counts::default());
    }
}
