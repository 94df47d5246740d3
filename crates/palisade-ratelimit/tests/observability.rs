//! Decisions and backend failures are counted in `metrics`, with stable names and labels.

use axum::body::Body;
use http::Request;
use palisade_core::{BackendError, OnBackendError, key::PeerAddr};
use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
use palisade_testkit::metrics::Recording;
use tower::{Layer, Service};

#[tokio::test]
async fn decisions_are_counted_by_policy_and_outcome() {
    let recorder = Recording::default();
    let layer = RateLimitLayer::new(
        MemoryStore::new(),
        Policy::new("observed", TokenBucket::new(2, 0.001).unwrap()).unwrap(),
    );
    let mut svc = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    for _ in 0..5 {
        let mut req = Request::new(Body::empty());
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.1:1".parse().unwrap()));
        // The in-memory decision is taken inside `call`.
        let future = metrics::with_local_recorder(&recorder, || svc.call(req));
        future.await.unwrap();
    }
    assert_eq!(
        recorder.get("palisade_ratelimit_decisions_total{outcome=allowed,policy=observed}"),
        2.0
    );
    assert_eq!(
        recorder.get("palisade_ratelimit_decisions_total{outcome=rejected,policy=observed}"),
        3.0
    );
}

#[test]
fn backend_failures_are_counted_by_layer_and_policy() {
    let recorder = Recording::default();
    let error = BackendError::Timeout(std::time::Duration::from_millis(50));
    metrics::with_local_recorder(&recorder, || {
        assert!(OnBackendError::FailOpen.apply("ratelimit", &error));
        assert!(!OnBackendError::FailClosed.apply("ratelimit", &error));
        assert!(!OnBackendError::FailClosed.apply("ratelimit", &error));
    });
    assert_eq!(
        recorder.get("palisade_backend_errors_total{layer=ratelimit,policy=fail_open}"),
        1.0
    );
    assert_eq!(
        recorder.get("palisade_backend_errors_total{layer=ratelimit,policy=fail_closed}"),
        2.0
    );
}
