//! Redlock's arithmetic, pure: the quorum, a lock's validity, and what the node answers of an
//! acquisition or an extension mean. [`Redlock`](crate::Redlock) only counts answers and
//! measures time; every verdict is made here.

use std::time::Duration;

use palisade_core::lease::safety_margin;

/// How many of `nodes` must agree: a majority, `nodes / 2 + 1`.
pub fn quorum(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// How long a lock taken with lease `ttl` is still safe to hold, `elapsed` after the requests
/// were sent: `ttl − elapsed − drift` (drift: [`safety_margin`], 1 % of the TTL + 2 ms), or
/// `None` when nothing is left.
pub fn validity(ttl: Duration, elapsed: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed + safety_margin(ttl))
        .filter(|left| !left.is_zero())
}

/// What an acquisition's answers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// A quorum granted it with time left: held for `validity`.
    Held {
        /// How long it is safe to hold before an extension.
        validity: Duration,
    },
    /// Not held, but enough nodes answered to know someone else holds it (or time ran out):
    /// release everywhere and try again later.
    Busy,
    /// Too many nodes did not answer for a quorum to be possible: a backend error.
    Unreachable,
}

/// The verdict on an acquisition sent to `nodes` nodes: `granted` said yes, `failed` did not
/// answer, `elapsed` since the requests were sent.
pub fn acquisition(
    nodes: usize,
    granted: usize,
    failed: usize,
    ttl: Duration,
    elapsed: Duration,
) -> Acquisition {
    let needed = quorum(nodes);
    match validity(ttl, elapsed) {
        Some(validity) if granted >= needed => Acquisition::Held { validity },
        _ if failed > nodes - needed => Acquisition::Unreachable,
        _ => Acquisition::Busy,
    }
}

/// What an extension's answers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// A quorum extended it in time: still held.
    Held,
    /// Too many nodes answered "not yours" (or time ran out with no doubt left): lost.
    Lost,
    /// Not enough answers to tell (nodes timed out): an error, so the watchdog tries again
    /// while the lease lasts, rather than declaring the lock lost.
    Unknown,
}

/// The verdict on an extension sent to `nodes` nodes: `extended` said yes, `failed` did not
/// answer, `elapsed` since the requests were sent.
pub fn extension(
    nodes: usize,
    extended: usize,
    failed: usize,
    ttl: Duration,
    elapsed: Duration,
) -> Extension {
    let needed = quorum(nodes);
    if extended >= needed && validity(ttl, elapsed).is_some() {
        Extension::Held
    } else if extended + failed >= needed {
        Extension::Unknown
    } else {
        Extension::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn majorities() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn validity_is_the_lease_less_time_spent_and_drift() {
        // Drift for 10 s: 100 ms + 2 ms.
        assert_eq!(validity(TTL, 400 * MS), Some(TTL - 502 * MS));
        assert_eq!(validity(TTL, TTL - 103 * MS), Some(MS));
        assert_eq!(
            validity(TTL, TTL - 102 * MS),
            None,
            "nothing left is not held"
        );
        assert_eq!(validity(TTL, TTL), None);
    }

    #[test]
    fn acquisitions_of_five_nodes() {
        let held = |v| Acquisition::Held { validity: v };
        assert_eq!(
            acquisition(5, 3, 0, TTL, Duration::ZERO),
            held(TTL - 102 * MS)
        );
        assert_eq!(acquisition(5, 5, 0, TTL, 98 * MS), held(TTL - 200 * MS));
        assert_eq!(acquisition(5, 2, 0, TTL, Duration::ZERO), Acquisition::Busy);
        assert_eq!(
            acquisition(5, 2, 2, TTL, Duration::ZERO),
            Acquisition::Busy,
            "2 failed: still possible"
        );
        assert_eq!(
            acquisition(5, 2, 3, TTL, Duration::ZERO),
            Acquisition::Unreachable
        );
        assert_eq!(
            acquisition(5, 0, 5, TTL, Duration::ZERO),
            Acquisition::Unreachable
        );
        // A quorum that came too late is not held.
        assert_eq!(acquisition(5, 5, 0, TTL, TTL), Acquisition::Busy);
        assert_eq!(
            acquisition(3, 2, 1, TTL, Duration::ZERO),
            held(TTL - 102 * MS)
        );
        assert_eq!(
            acquisition(3, 1, 2, TTL, Duration::ZERO),
            Acquisition::Unreachable
        );
    }

    #[test]
    fn extensions_of_five_nodes() {
        assert_eq!(extension(5, 3, 0, TTL, Duration::ZERO), Extension::Held);
        assert_eq!(
            extension(5, 3, 2, TTL, TTL),
            Extension::Unknown,
            "late: cannot tell"
        );
        assert_eq!(extension(5, 2, 1, TTL, Duration::ZERO), Extension::Unknown);
        assert_eq!(extension(5, 2, 0, TTL, Duration::ZERO), Extension::Lost);
        assert_eq!(extension(5, 0, 0, TTL, Duration::ZERO), Extension::Lost);
        assert_eq!(extension(5, 0, 3, TTL, Duration::ZERO), Extension::Unknown);
    }
}
