//! One suite, every store: the in-memory store, Redis, PostgreSQL and the dual store must
//! behave the same.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use bytes::Bytes;
use palisade_core::key::Key;
use palisade_idempotency::store::{Claim, IdempotencyStore, Owner, RecordKey};

const LEASE: Duration = Duration::from_secs(30);
const KEEP: Duration = Duration::from_secs(3600);

fn key(name: &str) -> RecordKey {
    RecordKey::new("suite", &Key::from("caller-1"), "/pay", name)
}

async fn claim_complete_replay<S: IdempotencyStore>(store: S) {
    let k = key("a");
    let first = Owner::unique();
    assert_eq!(
        store.claim(&k, "fp", &first, LEASE).await.unwrap(),
        Claim::Acquired
    );
    let other = Owner::unique();
    match store.claim(&k, "fp", &other, LEASE).await.unwrap() {
        Claim::InFlight { lease_left } => {
            assert!(lease_left <= LEASE && lease_left > Duration::from_secs(20))
        }
        other => panic!("expected in flight, got {other:?}"),
    }
    assert_eq!(
        store.claim(&k, "other-fp", &other, LEASE).await.unwrap(),
        Claim::Mismatch
    );
    // Only the owner completes.
    assert!(
        !store
            .complete(&k, &other, Bytes::from_static(b"x"), KEEP)
            .await
            .unwrap()
    );
    assert!(store.renew(&k, &first, LEASE).await.unwrap());
    assert!(!store.renew(&k, &other, LEASE).await.unwrap());
    let body = Bytes::from_static(b"\x00binary\xffresponse");
    assert!(
        store
            .complete(&k, &first, body.clone(), KEEP)
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim(&k, "fp", &other, LEASE).await.unwrap(),
        Claim::Completed(body)
    );
    assert_eq!(
        store.claim(&k, "zz", &other, LEASE).await.unwrap(),
        Claim::Mismatch
    );
    // Completed: the owner cannot release or renew any more.
    assert_eq!(store.release(&k, &first, KEEP).await.unwrap(), None);
    assert!(!store.renew(&k, &first, LEASE).await.unwrap());
}

async fn release_frees_and_counts<S: IdempotencyStore>(store: S) {
    let k = key("b");
    for attempt in 1..=3u32 {
        let owner = Owner::unique();
        // A released key is free even for a different request.
        let fp = format!("fp-{attempt}");
        assert_eq!(
            store.claim(&k, &fp, &owner, LEASE).await.unwrap(),
            Claim::Acquired
        );
        assert_eq!(
            store.release(&k, &Owner::unique(), KEEP).await.unwrap(),
            None
        );
        assert_eq!(
            store.release(&k, &owner, KEEP).await.unwrap(),
            Some(attempt)
        );
    }
    let owner = Owner::unique();
    assert_eq!(
        store.claim(&k, "fp", &owner, LEASE).await.unwrap(),
        Claim::Acquired
    );
    assert!(
        store
            .complete(&k, &owner, Bytes::from_static(b"ok"), KEEP)
            .await
            .unwrap()
    );
}

async fn keys_are_scoped<S: IdempotencyStore>(store: S) {
    let a = RecordKey::new("suite", &Key::from("caller-1"), "/pay", "same");
    let b = RecordKey::new("suite", &Key::from("caller-2"), "/pay", "same");
    let c = RecordKey::new("suite", &Key::from("caller-1"), "/refund", "same");
    let d = RecordKey::new("other", &Key::from("caller-1"), "/pay", "same");
    for k in [&a, &b, &c, &d] {
        assert_eq!(
            store.claim(k, "fp", &Owner::unique(), LEASE).await.unwrap(),
            Claim::Acquired
        );
    }
}

async fn one_winner_among_many<S: IdempotencyStore>(store: S) {
    for round in 0..20 {
        let k = key(&format!("race-{round}"));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            let k = k.clone();
            tasks.push(tokio::spawn(async move {
                let owner = Owner::unique();
                let claim = store.claim(&k, "fp", &owner, LEASE).await.unwrap();
                if claim == Claim::Acquired {
                    assert!(
                        store
                            .complete(&k, &owner, Bytes::from_static(b"r"), KEEP)
                            .await
                            .unwrap()
                    );
                }
                claim
            }));
        }
        let mut acquired = 0;
        for task in tasks {
            match task.await.unwrap() {
                Claim::Acquired => acquired += 1,
                Claim::InFlight { .. } | Claim::Completed(_) => {}
                Claim::Mismatch => panic!("same fingerprint cannot mismatch"),
            }
        }
        assert_eq!(acquired, 1, "round {round}: exactly one claim wins");
    }
}

async fn distinct_keys_in_parallel<S: IdempotencyStore>(store: S) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let k = key(&format!("p-{i}"));
            store
                .claim(&k, "fp", &Owner::unique(), LEASE)
                .await
                .unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Claim::Acquired);
        seen.insert(i);
    }
    assert_eq!(seen.len(), 50);
}

/// A failed attempt is released for another, and the last allowed one retires the record in
/// the same step (no window in which another worker could claim and run it).
async fn failures_release_then_retire<S: IdempotencyStore>(store: S) {
    let k = key("f");
    let dead = Bytes::from_static(b"dead");
    for attempt in 1..=3u32 {
        let owner = Owner::unique();
        assert_eq!(
            store.claim(&k, "", &owner, LEASE).await.unwrap(),
            Claim::Acquired,
            "attempt {attempt}"
        );
        // Only the owner's failure counts.
        assert_eq!(
            store
                .fail(&k, &Owner::unique(), 3, dead.clone(), KEEP)
                .await
                .unwrap(),
            None
        );
        let failed = store
            .fail(&k, &owner, 3, dead.clone(), KEEP)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.attempts, attempt);
        assert_eq!(failed.retired, attempt == 3);
    }
    // Retired: nobody runs it again.
    assert_eq!(
        store.claim(&k, "", &Owner::unique(), LEASE).await.unwrap(),
        Claim::Completed(dead)
    );
}

macro_rules! suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn claim_complete_replay() {
                let store = $make;
                super::claim_complete_replay(store.0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn release_frees_and_counts() {
                let store = $make;
                super::release_frees_and_counts(store.0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keys_are_scoped() {
                let store = $make;
                super::keys_are_scoped(store.0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_winner_among_many() {
                let store = $make;
                super::one_winner_among_many(store.0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failures_release_then_retire() {
                let store = $make;
                super::failures_release_then_retire(store.0).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distinct_keys_in_parallel() {
                let store = $make;
                super::distinct_keys_in_parallel(store.0).await;
            }
        }
    };
}

suite!(memory, (common::memory_store(),));
suite!(redis, common::redis_store().await);
suite!(redis_rs, common::redis_rs_store().await);
// A store chosen at run time: `Either` delegating to each side.
suite!(
    either_memory,
    (palisade_core::Either::<_, palisade_idempotency::MemoryStore>::Left(common::memory_store()),)
);
suite!(either_redis, {
    let (store, redis) = common::redis_store().await;
    (
        palisade_core::Either::<palisade_idempotency::MemoryStore, _>::Right(store),
        redis,
    )
});
suite!(postgres, common::postgres_store().await);
suite!(dual, {
    let (store, r, p) = common::dual_store().await;
    (store, (r, p))
});

palisade_testkit::suite_on_cluster!(
    |client, prefix| palisade_idempotency::RedisStore::new(client)
        .with_prefix(prefix)
        .with_timeout(Duration::from_secs(2)),
    [
        claim_complete_replay,
        release_frees_and_counts,
        keys_are_scoped,
        one_winner_among_many,
        failures_release_then_retire,
        distinct_keys_in_parallel,
    ]
);
