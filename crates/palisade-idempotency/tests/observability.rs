//! Outcomes are counted under `palisade_idempotency_requests_total{outcome}`. One test in this
//! binary: it installs the process-wide recorder (the counts happen inside futures).

use std::convert::Infallible;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_idempotency::{IdempotencyLayer, MemoryStore};
use palisade_testkit::metrics::Recording;
use tower::{Layer, ServiceExt};

#[tokio::test]
async fn outcomes_are_counted() {
    let recording = Recording::default();
    metrics::set_global_recorder(recording.clone()).expect("the only recorder in this binary");
    let svc = IdempotencyLayer::new(MemoryStore::new()).layer(tower::service_fn(
        |req: Request<_>| async move {
            let status = if req.uri().path() == "/fail" {
                500
            } else {
                201
            };
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        },
    ));
    let call = |path: &'static str, key: Option<&'static str>, body: &'static str| {
        let svc = svc.clone();
        async move {
            let mut req = Request::post(path);
            if let Some(key) = key {
                req = req.header("idempotency-key", key);
            }
            svc.oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call("/pay", Some("a"), "1").await, 201);
    assert_eq!(call("/pay", Some("a"), "1").await, 201);
    assert_eq!(call("/pay", Some("a"), "2").await, 422);
    assert_eq!(call("/pay", None, "1").await, 201);
    assert_eq!(call("/pay", Some("\"\""), "1").await, 400);
    assert_eq!(call("/fail", Some("b"), "1").await, 500);
    let count = |outcome: &str| {
        recording.get(&format!(
            "palisade_idempotency_requests_total{{outcome={outcome}}}"
        ))
    };
    assert_eq!(count("executed"), 2.0);
    assert_eq!(count("replayed"), 1.0);
    assert_eq!(count("key_reused"), 1.0);
    assert_eq!(count("bypassed"), 1.0);
    assert_eq!(count("bad_request"), 1.0);
    assert_eq!(count("not_stored"), 1.0);
}
