//! One breaker per upstream: isolation and bounded memory.

use std::{convert::Infallible, time::Duration};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_breaker::{
    BreakerPolicy, BreakerRegistry, KeyedCircuitBreakerLayer, OpenDuration, State,
};
use tower::{Layer, Service, ServiceExt};

fn policy() -> BreakerPolicy {
    BreakerPolicy::builder("upstreams")
        .count_window(4)
        .minimum_calls(4)
        .open_for(OpenDuration::fixed(Duration::from_secs(30)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_sick_upstream_is_cut_off_while_others_flow() {
    let registry = BreakerRegistry::new(policy(), 64);
    let mut client = KeyedCircuitBreakerLayer::new(registry.clone()).layer(tower::service_fn(
        |req: Request<Body>| async move {
            let status = if req.uri().host() == Some("sick.internal") {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::OK
            };
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            Ok::<_, Infallible>(r)
        },
    ));
    let get = |host: &str| {
        Request::get(format!("http://{host}/v1/things"))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..4 {
        let r = client
            .ready()
            .await
            .unwrap()
            .call(get("sick.internal"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
    let r = client
        .ready()
        .await
        .unwrap()
        .call(get("sick.internal"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..10 {
        let r = client
            .ready()
            .await
            .unwrap()
            .call(get("healthy.internal"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let states: Vec<(String, State)> = {
        let mut s: Vec<_> = registry
            .snapshots()
            .into_iter()
            .map(|s| (s.name, s.state))
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    };
    assert_eq!(
        states,
        [
            (
                "upstreams/authority:healthy.internal".to_string(),
                State::Closed
            ),
            ("upstreams/authority:sick.internal".to_string(), State::Open),
        ]
    );
}

#[tokio::test]
async fn the_registry_is_bounded_and_keeps_open_breakers() {
    let registry = BreakerRegistry::new(policy(), 8);
    let sick = registry.get(&"sick".into());
    sick.force_open();
    for i in 0..1_000 {
        let _ = registry.get(&format!("host-{i}").into());
        assert!(registry.len() <= 8);
    }
    assert_eq!(
        registry.get(&"sick".into()).state(),
        State::ForcedOpen,
        "closed breakers are evicted first"
    );
    let svc = KeyedCircuitBreakerLayer::new(registry).layer(tower::service_fn(
        |_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) },
    ));
    // A request without an authority shares the `global` breaker.
    let r = svc.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
