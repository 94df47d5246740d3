//! The fault matrix for the rate limiter on Redis: a check under every fault of
//! `palisade_testkit::faults`. Once the fault heals: never more admitted than the limit (a late
//! check may have spent a token: under-admission is the safe side), no hang past the timeout,
//! and the limiter decides again.

use std::time::Duration;

use palisade_core::key::Key;
use palisade_core::redis::RedisClient;
use palisade_ratelimit::{Policy, RateLimiter, RedisStore, TokenBucket};
use palisade_testkit::faults::{Fault, FaultRig, eventually};

const CAPACITY: u64 = 5;

async fn check_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let policy = Policy::new("matrix", TokenBucket::new(CAPACITY, 0.001).unwrap()).unwrap();
    let faulty = RateLimiter::new(
        RedisStore::new(faulty).with_timeout(Duration::from_millis(100)),
        policy.clone(),
    );
    let observer = RateLimiter::new(
        RedisStore::new(observer).with_timeout(Duration::from_secs(2)),
        policy,
    );
    // Load the script while the network is fine.
    faulty.check(&Key::from("warm"), 1).await.unwrap();
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let key = Key::from(format!("client-{i}").as_str());
        let (outcome, took) = rig.inject(fault, faulty.check(&key, 1)).await;
        assert!(
            took < Duration::from_secs(2),
            "{fault:?}: check took {took:?}"
        );
        let admitted_under_fault = matches!(outcome, Some(Ok(ref d)) if d.is_allowed()) as u64;
        let mut admitted = admitted_under_fault;
        for _ in 0..CAPACITY + 3 {
            if observer.check(&key, 1).await.unwrap().is_allowed() {
                admitted += 1;
            }
        }
        assert!(
            admitted <= CAPACITY,
            "{fault:?}: {admitted} admitted with a limit of {CAPACITY}"
        );
        // The faulty instance decides again once the fault is over.
        let other = Key::from(format!("after-{i}").as_str());
        assert!(
            eventually(Duration::from_secs(3), || async {
                faulty.check(&other, 1).await.is_ok()
            })
            .await,
            "{fault:?}: the limiter does not recover"
        );
    }
}

/// The request's deadline cuts a pending check off, whatever the store's own timeout: a stalled
/// Redis costs what is left of the budget, and the policy's `on_backend_error` decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_check_ends_at_the_request_deadline() {
    use palisade_core::{OnBackendError, deadline::DeadlineLayer, key::Header};
    use palisade_ratelimit::RateLimitLayer;
    use palisade_testkit::FaultMode;
    use tower::{Layer, ServiceExt};

    let rig = FaultRig::start().await;
    let store = RedisStore::new(rig.faulty().await).with_timeout(Duration::from_secs(5));
    let policy = Policy::builder("budget")
        .limit("burst", TokenBucket::new(CAPACITY, 1.0).unwrap())
        .unwrap()
        .on_backend_error(OnBackendError::FailClosed)
        .build()
        .unwrap();
    let limited = RateLimitLayer::builder(store, policy)
        .key(Header::new("x-api-key"))
        .build()
        .layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
        }));
    let service = DeadlineLayer::new(Duration::from_millis(300)).layer(limited);
    let request = || {
        http::Request::get("/")
            .header("x-api-key", "k")
            .body(())
            .unwrap()
    };
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    rig.proxy_set(FaultMode::BlackHole);
    let started = tokio::time::Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    let took = started.elapsed();
    rig.heal();
    assert_eq!(response.status(), 503, "fail closed at the deadline");
    assert!(
        took < Duration::from_secs(2),
        "answered after {took:?}, not at the deadline"
    );
}

palisade_testkit::on_both_clients!(check_under_every_fault);
