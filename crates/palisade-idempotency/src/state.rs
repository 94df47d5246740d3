//! The idempotency record as a pure state machine: claim, renew, complete and fail (release is a
//! failure with no limit), each one step from the record before to the record after, with time
//! as a parameter.
//!
//! This is the reference every store follows: [`MemoryStore`](crate::MemoryStore) runs it
//! directly; the Redis scripts (`src/scripts/*.lua`) and the PostgreSQL statements are its
//! twins, and `tests/differential.rs` runs random operation sequences on the model and on each
//! of them, comparing every answer.
//!
//! ```text
//!            claim                 complete
//!   (none) ────────► processing ───────────► completed ──(retention ends)──► (none)
//!      ▲   lease ends   │  │ fail, < max          ▲
//!      └────────────────┘  └──────────► released ─┼── claim ──► processing
//!                          fail, = max            │
//!                          └──────────────────────┘ (completed with the dead-letter marker)
//! ```

use std::{
    ops::{Add, Sub},
    time::Duration,
};

use bytes::Bytes;

/// A claim's owner: a random token only its holder knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// A fresh token, unique across processes
    /// ([`unique_token`](palisade_core::token::unique_token)). Tokens never leave the server,
    /// so they need to be unique, not unguessable.
    pub fn unique() -> Owner {
        Owner(palisade_core::token::unique_token())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (new, expired, or released): the caller now owns it until the lease
    /// ends and must complete or release it.
    Acquired,
    /// Another request holds the key with the same fingerprint; its lease has this long left.
    InFlight {
        /// Time left on the holder's lease.
        lease_left: Duration,
    },
    /// The operation completed; here is its stored response (encoded).
    Completed(Bytes),
    /// The key is held or completed with a different request fingerprint.
    Mismatch,
}

/// A failed attempt, as [`IdempotencyStore::fail`](crate::IdempotencyStore::fail) recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Failed attempts so far, this one included.
    pub attempts: u32,
    /// Whether this was the last allowed attempt: the record is now completed with the
    /// dead-letter marker, so nobody runs it again.
    pub retired: bool,
}

/// Where a record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Claimed by this owner until the lease ends.
    Processing(Owner),
    /// Done; this is the stored (encoded) response.
    Completed(Bytes),
    /// A failed attempt gave it back: the next claim acquires it, whatever its fingerprint.
    Released,
}

/// One record. `T` is the clock's instant (tokio's `Instant` in the memory store, a duration
/// since an epoch in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    /// Where it stands.
    pub phase: Phase,
    /// The fingerprint of the request that claimed it.
    pub fingerprint: Box<str>,
    /// Failed attempts so far (kept across releases).
    pub failures: u32,
    /// The lease's end while processing; the retention's end otherwise. At or after it the
    /// record is gone.
    pub expires_at: T,
}

/// The answer of one step and the record to write, if it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<T, R> {
    /// What the caller is told.
    pub reply: R,
    /// The record after the step; `None` leaves the record as it was.
    pub write: Option<Record<T>>,
}

fn unchanged<T, R>(reply: R) -> Step<T, R> {
    Step { reply, write: None }
}

fn live<T: Copy + Ord>(record: Option<&Record<T>>, now: T) -> Option<&Record<T>> {
    record.filter(|r| r.expires_at > now)
}

// The record, if `owner` holds it with its lease running.
fn owned<'a, T: Copy + Ord>(
    record: Option<&'a Record<T>>,
    now: T,
    owner: &Owner,
) -> Option<&'a Record<T>> {
    live(record, now).filter(|r| matches!(&r.phase, Phase::Processing(holder) if holder == owner))
}

/// Claims the record for `owner` with `lease`: acquired when it is absent, expired or released
/// (failures kept); otherwise in flight, completed, or a fingerprint mismatch.
pub fn claim<T>(
    record: Option<&Record<T>>,
    now: T,
    fingerprint: &str,
    owner: &Owner,
    lease: Duration,
) -> Step<T, Claim>
where
    T: Copy + Ord + Add<Duration, Output = T> + Sub<Output = Duration>,
{
    let failures = match live(record, now) {
        None => 0,
        Some(r) if r.phase == Phase::Released => r.failures,
        Some(r) if *r.fingerprint != *fingerprint => return unchanged(Claim::Mismatch),
        Some(r) => {
            return unchanged(match &r.phase {
                Phase::Completed(response) => Claim::Completed(response.clone()),
                _ => Claim::InFlight {
                    lease_left: r.expires_at - now,
                },
            });
        }
    };
    Step {
        reply: Claim::Acquired,
        write: Some(Record {
            phase: Phase::Processing(owner.clone()),
            fingerprint: fingerprint.into(),
            failures,
            expires_at: now + lease,
        }),
    }
}

/// Extends `owner`'s lease to `lease` from now; `false` when the claim is not (or no longer)
/// theirs.
pub fn renew<T>(record: Option<&Record<T>>, now: T, owner: &Owner, lease: Duration) -> Step<T, bool>
where
    T: Copy + Ord + Add<Duration, Output = T>,
{
    match owned(record, now, owner) {
        Some(r) => Step {
            reply: true,
            write: Some(Record {
                expires_at: now + lease,
                ..r.clone()
            }),
        },
        None => unchanged(false),
    }
}

/// Stores `response` under `owner`'s claim, kept for `retention`; `false` when the claim is not
/// theirs.
pub fn complete<T>(
    record: Option<&Record<T>>,
    now: T,
    owner: &Owner,
    response: Bytes,
    retention: Duration,
) -> Step<T, bool>
where
    T: Copy + Ord + Add<Duration, Output = T>,
{
    match owned(record, now, owner) {
        Some(r) => Step {
            reply: true,
            write: Some(Record {
                phase: Phase::Completed(response),
                expires_at: now + retention,
                ..r.clone()
            }),
        },
        None => unchanged(false),
    }
}

/// A failed attempt of `owner`'s claim: released for another attempt, or — at `max_attempts`
/// — retired, completed with the `dead` marker, in the same step. Kept for `retention`. `None`
/// when the claim is not theirs.
pub fn fail<T>(
    record: Option<&Record<T>>,
    now: T,
    owner: &Owner,
    max_attempts: u32,
    dead: Bytes,
    retention: Duration,
) -> Step<T, Option<Failed>>
where
    T: Copy + Ord + Add<Duration, Output = T>,
{
    let Some(r) = owned(record, now, owner) else {
        return unchanged(None);
    };
    let failures = r.failures.saturating_add(1);
    let retired = failures >= max_attempts;
    Step {
        reply: Some(Failed {
            attempts: failures,
            retired,
        }),
        write: Some(Record {
            phase: if retired {
                Phase::Completed(dead)
            } else {
                Phase::Released
            },
            fingerprint: r.fingerprint.clone(),
            failures,
            expires_at: now + retention,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn apply<R>(
        record: &mut Option<Record<Duration>>,
        step: impl FnOnce(Option<&Record<Duration>>) -> Step<Duration, R>,
    ) -> R {
        let step = step(record.as_ref());
        if let Some(new) = step.write {
            *record = Some(new);
        }
        step.reply
    }

    #[test]
    fn the_whole_life_of_a_record() {
        let (a, b) = (Owner::unique(), Owner::unique());
        let mut r = None;
        assert_eq!(
            apply(&mut r, |r| claim(r, at(0), "f", &a, 10 * S)),
            Claim::Acquired
        );
        assert_eq!(
            apply(&mut r, |r| claim(r, at(4), "f", &b, 10 * S)),
            Claim::InFlight { lease_left: 6 * S }
        );
        assert_eq!(
            apply(&mut r, |r| claim(r, at(4), "g", &b, 10 * S)),
            Claim::Mismatch
        );
        assert!(!apply(&mut r, |r| renew(r, at(5), &b, 10 * S)));
        assert!(apply(&mut r, |r| renew(r, at(5), &a, 10 * S)));
        assert_eq!(r.as_ref().unwrap().expires_at, at(15));
        assert!(!apply(&mut r, |r| complete(
            r,
            at(6),
            &b,
            "x".into(),
            60 * S
        )));
        assert!(apply(&mut r, |r| complete(
            r,
            at(6),
            &a,
            "x".into(),
            60 * S
        )));
        assert_eq!(
            apply(&mut r, |r| claim(r, at(7), "f", &b, 10 * S)),
            Claim::Completed("x".into())
        );
        // Completed: nobody renews, completes or fails it any more.
        assert!(!apply(&mut r, |r| renew(r, at(7), &a, 10 * S)));
        assert_eq!(
            apply(&mut r, |r| fail(r, at(7), &a, 3, "dead".into(), S)),
            None
        );
        // Retention over: a new claim acquires it.
        assert_eq!(
            apply(&mut r, |r| claim(r, at(66), "g", &b, 10 * S)),
            Claim::Acquired
        );
    }

    #[test]
    fn failures_release_then_retire_and_count_across_claims() {
        let mut r = None;
        for attempt in 1..=3u32 {
            let owner = Owner::unique();
            // A released record is acquired whatever the fingerprint.
            let fp = if attempt == 2 { "other" } else { "f" };
            assert_eq!(
                apply(&mut r, |r| claim(r, at(0), fp, &owner, S)),
                Claim::Acquired
            );
            let failed = apply(&mut r, |r| fail(r, at(0), &owner, 3, "dead".into(), S));
            assert_eq!(
                failed,
                Some(Failed {
                    attempts: attempt,
                    retired: attempt == 3
                })
            );
        }
        // Retired: completed with the marker, under the last claim's fingerprint.
        assert_eq!(
            apply(&mut r, |r| claim(r, at(0), "f", &Owner::unique(), S)),
            Claim::Completed("dead".into())
        );
        assert_eq!(
            apply(&mut r, |r| claim(r, at(0), "other", &Owner::unique(), S)),
            Claim::Mismatch
        );
    }

    #[test]
    fn a_completed_record_lives_for_its_retention_not_its_lease() {
        let (a, b) = (Owner::unique(), Owner::unique());
        let mut r = None;
        apply(&mut r, |r| claim(r, at(0), "f", &a, 10 * S));
        assert!(apply(&mut r, |r| complete(
            r,
            at(5),
            &a,
            "x".into(),
            60 * S
        )));
        // Past the lease's end, within the retention: still replayed.
        assert_eq!(
            apply(&mut r, |r| claim(r, at(30), "f", &b, 10 * S)),
            Claim::Completed("x".into())
        );
        assert_eq!(r.as_ref().unwrap().expires_at, at(65));
    }

    #[test]
    fn an_expired_lease_is_nobody_s() {
        let a = Owner::unique();
        let mut r = None;
        apply(&mut r, |r| claim(r, at(0), "f", &a, 10 * S));
        // At the lease's end exactly, it is over.
        assert!(!apply(&mut r, |r| renew(r, at(10), &a, 10 * S)));
        assert!(!apply(&mut r, |r| complete(r, at(10), &a, "x".into(), S)));
        let b = Owner::unique();
        assert_eq!(
            apply(&mut r, |r| claim(r, at(10), "g", &b, S)),
            Claim::Acquired
        );
        assert_eq!(r.unwrap().failures, 0, "an expiry is not a failure");
    }
}
