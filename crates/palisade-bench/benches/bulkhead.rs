//! Bulkhead overhead per call, uncontended (1 thread) and contended (2 threads sharing one
//! limit of 1 000, so nobody waits but every call touches shared state): bare vs palisade's
//! `BulkheadLayer` vs tower's `ConcurrencyLimit` vs tower-resilience's bulkhead
//! (`reject_when_full`), in the same run.
//!
//! cargo bench -p palisade-bench --bench bulkhead

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use palisade_bulkhead::{BulkheadLayer, Pool, PoolConfig};
use tower::{Layer, Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn one<S>(svc: &mut S)
where
    S: Service<Request<()>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    black_box(
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap(),
    );
}

fn bench<S>(c: &mut Criterion, name: &str, svc: S)
where
    S: Service<Request<()>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    c.bench_function(&format!("{name}: 1 thread"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            runtime().block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    one(&mut svc).await;
                }
                started.elapsed()
            })
        })
    });
    c.bench_function(&format!("{name}: 2 threads, shared"), |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (mut svc, barrier) = (svc.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let rt = runtime();
                        barrier.wait();
                        rt.block_on(async {
                            for _ in 0..iters / 2 {
                                one(&mut svc).await;
                            }
                        })
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            for t in threads {
                t.join().unwrap();
            }
            started.elapsed()
        })
    });
}

fn bulkheads(c: &mut Criterion) {
    let hello = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    bench(c, "bare", hello);
    let pool = Pool::new(PoolConfig::single("bench", 1_000, 0, Duration::ZERO));
    bench(
        c,
        "palisade BulkheadLayer",
        BulkheadLayer::new(pool.clone(), pool.lowest_tier()).layer(hello),
    );
    bench(
        c,
        "tower ConcurrencyLimit",
        tower::limit::ConcurrencyLimitLayer::new(1_000).layer(hello),
    );
    let tr = tower_resilience_bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(1_000)
        .reject_when_full()
        .build()
        .unwrap();
    bench(
        c,
        "tower-resilience bulkhead (reject_when_full)",
        tr.layer(hello),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bulkheads
}
criterion_main!(benches);
