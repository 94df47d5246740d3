//! Closed-breaker overhead per call: bare service vs palisade's `CircuitBreakerLayer` vs
//! tower-resilience's circuit breaker (0.14), from one thread and from two threads sharing
//! one breaker, in the same run.
//!
//! cargo bench -p palisade-bench --bench breaker

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_breaker::{
    AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, ErrorsAreFailures,
};
use tower::{BoxError, Layer, Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn one_call<S>(svc: &mut S, i: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(i).await.unwrap()
}

fn bench<S>(c: &mut Criterion, name: &str, svc: S)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    c.bench_function(&format!("{name}: 1 thread"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            let rt = runtime();
            rt.block_on(async {
                let started = Instant::now();
                for i in 0..iters {
                    black_box(one_call(&mut svc, i).await);
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
                    let mut svc = svc.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let rt = runtime();
                        barrier.wait();
                        rt.block_on(async {
                            for i in 0..iters / 2 {
                                black_box(one_call(&mut svc, i).await);
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
            // Wall time for `iters` calls made by two threads at once: per-call cost when the
            // breaker is shared (contention shows up here).
            started.elapsed()
        })
    });
}

fn breakers(c: &mut Criterion) {
    let bare = tower::service_fn(|i: u64| async move { Ok::<_, BoxError>(i) });
    bench(c, "bare", bare);

    let breaker = CircuitBreaker::new(BreakerPolicy::builder("bench").build().unwrap());
    bench(
        c,
        "palisade CircuitBreakerLayer (closed)",
        CircuitBreakerLayer::new(breaker)
            .classify(ErrorsAreFailures)
            .on_open(AsError)
            .layer(bare),
    );

    let tr = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .build()
        .expect("valid tower-resilience config");
    bench(
        c,
        "tower-resilience circuit breaker (closed)",
        tr.layer(bare),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = breakers
}
criterion_main!(benches);
