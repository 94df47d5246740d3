//! Retry layer overhead when the first attempt succeeds: bare service vs palisade's
//! `RetryLayer` vs tower's `Retry` with a `TpsBudget`, in the same run. `http::Request<String>`
//! with a 32-byte body; both layers must keep a copy to be able to retry.
//!
//! cargo bench -p palisade-bench --bench retry

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use palisade_retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower::{
    Layer, Service, ServiceExt,
    retry::{
        Policy,
        budget::{Budget, TpsBudget},
    },
};

/// tower's retry policy for the comparison: up to 3 attempts on 5xx, within a `TpsBudget`.
#[derive(Clone)]
struct TowerPolicy {
    attempts: u32,
    budget: Arc<TpsBudget>,
}

impl<E> Policy<Request<String>, Response<String>, E> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<String>,
        result: &mut Result<Response<String>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(r) if !r.status().is_server_error() => {
                self.budget.deposit();
                None
            }
            _ if self.attempts > 1 && self.budget.withdraw() => {
                self.attempts -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<String>) -> Option<Request<String>> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> Request<String> {
    Request::get("http://upstream/items/42")
        .body("0123456789abcdef0123456789abcdef".to_string())
        .unwrap()
}

fn bench<S>(c: &mut Criterion, name: &str, svc: S)
where
    S: Service<Request<String>, Response = Response<String>> + Clone,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            let mut svc = svc.clone();
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
                    black_box(response);
                }
                started.elapsed()
            })
        })
    });
}

fn retries(c: &mut Criterion) {
    let ok = || Response::new(String::from("ok"));
    bench(
        c,
        "bare service",
        tower::service_fn(move |_req: Request<String>| async move { Ok::<_, Infallible>(ok()) }),
    );
    bench(
        c,
        "palisade RetryLayer (3 attempts, budget)",
        RetryLayer::new(RetryPolicy::new(3)).layer(tower::service_fn(
            move |_req: Request<ReplayBody<String>>| async move { Ok::<_, Infallible>(ok()) },
        )),
    );
    let policy = TowerPolicy {
        attempts: 3,
        budget: Arc::new(TpsBudget::default()),
    };
    bench(
        c,
        "tower Retry (3 attempts, TpsBudget)",
        tower::retry::RetryLayer::new(policy).layer(tower::service_fn(
            move |_req: Request<String>| async move { Ok::<_, Infallible>(ok()) },
        )),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = retries
}
criterion_main!(benches);
