//! `CacheLayer` (memory store) per request: a hit against the bare origin service it
//! replaces, the pass-through cost of a response the cache may not store, and the peer
//! `tower-http-cache` 0.6 (moka, TTL from its configuration) hit in the same run. 1 KiB bodies,
//! collected by the caller in every case.
//!
//! cargo bench -p palisade-bench --bench cache

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_cache::{HttpCache, MemoryStore};
use tower::{Layer, Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> Request<Full<Bytes>> {
    Request::get("http://origin.example/items/42")
        .header("accept", "*/*")
        .body(Full::default())
        .unwrap()
}

fn origin(
    cache_control: &'static str,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let body = Bytes::from(vec![b'x'; 1024]);
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let body = body.clone();
        async move {
            let mut response = Response::new(Full::new(body));
            let headers = response.headers_mut();
            headers.insert("cache-control", cache_control.parse().unwrap());
            headers.insert("content-type", "application/octet-stream".parse().unwrap());
            headers.insert(
                "date",
                httpdate::fmt_http_date(std::time::SystemTime::now())
                    .parse()
                    .unwrap(),
            );
            Ok::<_, Infallible>(response)
        }
    })
}

fn bench<S, B>(c: &mut Criterion, name: &str, svc: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            let mut svc = svc.clone();
            rt.block_on(async {
                // Stored before the clock starts.
                let warm = svc.ready().await.unwrap().call(request()).await.unwrap();
                black_box(warm.into_body().collect().await.unwrap());
                let started = Instant::now();
                for _ in 0..iters {
                    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
                    black_box(response.into_body().collect().await.unwrap());
                }
                started.elapsed()
            })
        })
    });
}

fn cache(c: &mut Criterion) {
    bench(c, "bare origin service (1 KiB)", origin("max-age=3600"));
    let cache = HttpCache::new(MemoryStore::new(64 << 20));
    bench(
        c,
        "palisade CacheLayer hit (memory, 1 KiB)",
        cache.layer().layer(origin("max-age=3600")),
    );
    let cache = HttpCache::new(MemoryStore::new(64 << 20));
    bench(
        c,
        "palisade CacheLayer pass-through (no-store)",
        cache.layer().layer(origin("no-store")),
    );
    let peer = tower_http_cache::prelude::CacheLayer::builder(
        tower_http_cache::prelude::InMemoryBackend::new(10_000),
    )
    .ttl(Duration::from_secs(3600))
    .build();
    bench(
        c,
        "tower-http-cache 0.6 hit (moka)",
        peer.layer(origin("max-age=3600")),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = cache
}
criterion_main!(benches);
