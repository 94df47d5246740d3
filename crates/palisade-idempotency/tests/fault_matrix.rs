//! The fault matrix for idempotency records on Redis: claim, renew, complete and release, each
//! under every fault of `palisade_testkit::faults`. Once the fault heals: never a second
//! execution while a claim may be live, no claim orphaned beyond the documented bound (the
//! compensation, or the lease), no call hanging past its deadline.

use std::time::Duration;

use bytes::Bytes;
use palisade_core::redis::RedisClient;
use palisade_idempotency::{
    IdempotencyStore, RedisStore,
    store::{Claim, Owner, RecordKey},
};
use palisade_testkit::faults::{Fault, FaultRig, eventually};

const LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_secs(2);
const RETENTION: Duration = Duration::from_secs(60);
const ANSWERED: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(4);

async fn stores<C: RedisClient>(faulty: C, observer: C) -> (RedisStore<C>, RedisStore<C>) {
    let faulty = RedisStore::new(faulty).with_timeout(Duration::from_millis(100));
    let observer = RedisStore::new(observer);
    // Load every script while the network is fine.
    let key = RecordKey::message("warm", "warm");
    let owner = Owner::unique();
    assert_eq!(
        faulty.claim(&key, "f", &owner, LEASE).await.unwrap(),
        Claim::Acquired
    );
    faulty.renew(&key, &owner, LEASE).await.unwrap();
    faulty.release(&key, &owner, RETENTION).await.unwrap();
    let owner = Owner::unique();
    faulty.claim(&key, "f", &owner, LEASE).await.unwrap();
    faulty
        .complete(&key, &owner, Bytes::from_static(b"r"), RETENTION)
        .await
        .unwrap();
    (faulty, observer)
}

/// Claims `key` through `store` once it has reconnected after the last fault (bounded).
async fn claim_ok<C: RedisClient>(
    store: &RedisStore<C>,
    key: &RecordKey,
    owner: &Owner,
    lease: Duration,
) {
    for _ in 0..150 {
        if let Ok(Claim::Acquired) = store.claim(key, "f", owner, lease).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not claim after the fault healed");
}

/// What a retry would find now, through the observer.
async fn retry_finds<C: RedisClient>(observer: &RedisStore<C>, key: &RecordKey) -> Claim {
    observer
        .claim(key, "f", &Owner::unique(), LEASE)
        .await
        .expect("the observer reaches Redis")
}

/// The claim, as the layer makes it: a request under each fault, then the client's retry
/// through another instance. A request whose handler never ran is retried within the bound
/// (a late claim is undone, whether the claim timed out or the request was dropped mid-claim);
/// one whose handler ran is never run again.
async fn claim_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tower::{Layer, ServiceExt};

    let (store, observer) = stores(faulty, observer).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let instance = |store: RedisStore<C>| {
        let runs = runs.clone();
        palisade_idempotency::IdempotencyLayer::new(store)
            .lease(LEASE)
            .layer(tower::service_fn(move |_req: http::Request<_>| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"paid")),
                    ))
                }
            }))
    };
    let (faulty, retrying) = (instance(store), instance(observer));
    let request = |key: &str| {
        http::Request::post("/pay")
            .header("idempotency-key", key)
            .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = format!("claim-{i}");
        runs.store(0, Ordering::SeqCst);
        let (_, took) = rig
            .inject(fault, faulty.clone().oneshot(request(&key)))
            .await;
        assert!(took < ANSWERED, "{fault:?}: the request took {took:?}");
        if runs.load(Ordering::SeqCst) == 1 {
            // It ran (its outcome may be unknown): the retry must never run it again.
            let retry = retrying.clone().oneshot(request(&key)).await.unwrap();
            assert!(
                retry.status() == http::StatusCode::CONFLICT
                    || retry.headers().contains_key("idempotent-replayed"),
                "{fault:?}: retried with {}",
                retry.status()
            );
            assert_eq!(runs.load(Ordering::SeqCst), 1, "{fault:?}: ran twice");
            continue;
        }
        // It never ran: the retry runs within the bound, not after a 30 s lease.
        let ran = eventually(BOUND, || async {
            let retry = retrying.clone().oneshot(request(&key)).await.unwrap();
            retry.status() == http::StatusCode::OK
        })
        .await;
        assert!(
            ran,
            "{fault:?}: the retry of a request that never ran is refused"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{fault:?}: ran twice");
    }
}

async fn renew_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (store, observer) = stores(faulty, observer).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = RecordKey::message("renew", &i.to_string());
        let owner = Owner::unique();
        claim_ok(&store, &key, &owner, SHORT_LEASE).await;
        let (_, took) = rig
            .inject(fault, store.renew(&key, &owner, SHORT_LEASE))
            .await;
        assert!(took < ANSWERED, "{fault:?}: renew took {took:?}");
        // Renewed or not (a late renewal included), the claim is still the owner's: its next
        // renewal succeeds, and meanwhile a retry is refused, never run.
        assert!(
            eventually(BOUND, || async {
                store.renew(&key, &owner, SHORT_LEASE).await == Ok(true)
            })
            .await,
            "{fault:?}: the owner lost its claim"
        );
        assert!(
            matches!(retry_finds(&observer, &key).await, Claim::InFlight { .. }),
            "{fault:?}: a second execution"
        );
    }
}

/// A failed attempt recorded under every fault (the consumer dedup's path): released for a
/// retry within the bound (recorded, or the lease ran out), never retired early.
async fn fail_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (store, observer) = stores(faulty, observer).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = RecordKey::message("fail", &i.to_string());
        let owner = Owner::unique();
        claim_ok(&store, &key, &owner, SHORT_LEASE).await;
        let dead = Bytes::from_static(b"dead");
        let (_, took) = rig
            .inject(fault, store.fail(&key, &owner, 3, dead, RETENTION))
            .await;
        assert!(took < ANSWERED, "{fault:?}: fail took {took:?}");
        assert!(
            eventually(BOUND, || async {
                match retry_finds(&observer, &key).await {
                    Claim::Acquired => true,
                    Claim::Completed(_) => panic!("{fault:?}: retired after one failure"),
                    _ => false,
                }
            })
            .await,
            "{fault:?}: the message stays blocked"
        );
    }
}

async fn complete_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (store, observer) = stores(faulty, observer).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = RecordKey::message("complete", &i.to_string());
        let owner = Owner::unique();
        claim_ok(&store, &key, &owner, SHORT_LEASE).await;
        let response = Bytes::from_static(b"201");
        let (outcome, took) = rig
            .inject(fault, store.complete(&key, &owner, response, RETENTION))
            .await;
        assert!(took < ANSWERED, "{fault:?}: complete took {took:?}");
        // Stored, or still in flight until the lease ends: never a second run meanwhile.
        match retry_finds(&observer, &key).await {
            Claim::Completed(stored) => assert_eq!(stored.as_ref(), b"201"),
            Claim::InFlight { .. } => assert!(
                !matches!(outcome, Some(Ok(true))),
                "{fault:?}: completed, yet in flight"
            ),
            other => panic!("{fault:?}: a retry found {other:?}"),
        }
    }
}

async fn release_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (store, observer) = stores(faulty, observer).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = RecordKey::message("release", &i.to_string());
        let owner = Owner::unique();
        claim_ok(&store, &key, &owner, SHORT_LEASE).await;
        let (_, took) = rig
            .inject(fault, store.release(&key, &owner, RETENTION))
            .await;
        assert!(took < ANSWERED, "{fault:?}: release took {took:?}");
        // Released, or freed by the lease: a retry runs within the bound, never earlier than
        // the release could have happened.
        assert!(
            eventually(BOUND, || async {
                matches!(retry_finds(&observer, &key).await, Claim::Acquired)
            })
            .await,
            "{fault:?}: the key stays blocked"
        );
    }
}

palisade_testkit::on_both_clients!(
    claim_under_every_fault,
    renew_under_every_fault,
    fail_under_every_fault,
    complete_under_every_fault,
    release_under_every_fault,
);
