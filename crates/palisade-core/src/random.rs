//! One random source for every layer: jitter, lock-wait spreading, instance ids.
//!
//! `fastrand`'s per-thread generator, seeded from the operating system once per thread: cheap
//! (no system call per draw) and good enough for spreading retries. Not for secrets — owner
//! tokens come from [`crate::token`].

/// A uniform number in [0, 1).
pub fn unit() -> f64 {
    fastrand::f64()
}

/// A uniform 64-bit number.
pub fn u64() -> u64 {
    fastrand::u64(..)
}

#[cfg(test)]
mod tests {
    #[test]
    fn units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..100).map(|_| super::unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(super::u64(), super::u64());
    }
}
