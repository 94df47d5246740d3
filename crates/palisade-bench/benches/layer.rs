//! In-process cost of one request through a rate-limit layer (ready + call + response), every
//! request allowed, keyed by the peer IP: bare service vs `RateLimitLayer` (memory) vs
//! tower_governor's `GovernorLayer`, in the same run.
//!
//! cargo bench -p palisade-bench --bench layer

use std::{convert::Infallible, hint::black_box, net::SocketAddr, time::Duration};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use palisade_ratelimit::{Gcra, MemoryStore, Policy, RateLimitLayer};
use tower::{Layer, Service, ServiceExt};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};

fn request(peer: SocketAddr) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn run<S>(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, mut svc: S)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let peer: SocketAddr = "192.0.2.10:4000".parse().unwrap();
    c.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                let svc = svc.ready().await.unwrap();
                black_box(svc.call(request(peer)).await.unwrap())
            })
        })
    });
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // As axum answers a `&str` handler: a body and a content-type.
    let hello = || {
        tower::service_fn(|_req: Request<Body>| async {
            let mut response = Response::new(Body::from("Hello, World!"));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok::<_, Infallible>(response)
        })
    };
    run(c, "bare service", &rt, hello());

    let policy = Policy::new(
        "bench",
        Gcra::new(1_000_000, Duration::from_secs(1)).unwrap(),
    )
    .unwrap();
    run(
        c,
        "RateLimitLayer (memory, GCRA, client IP)",
        &rt,
        RateLimitLayer::new(MemoryStore::new(), policy).layer(hello()),
    );

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    run(
        c,
        "tower_governor GovernorLayer (peer IP)",
        &rt,
        GovernorLayer::new(config).layer(hello()),
    );

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .use_headers()
        .finish()
        .unwrap();
    run(
        c,
        "tower_governor GovernorLayer (peer IP, use_headers)",
        &rt,
        GovernorLayer::new(config).layer(hello()),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = layers
}
criterion_main!(benches);
