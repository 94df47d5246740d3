//! Decisions and backend failures are counted in `metrics`, with stable names and labels.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::body::Body;
use http::Request;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use palisade_core::{BackendError, OnBackendError, key::PeerAddr};
use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
use tower::{Layer, Service};

/// Counts every counter by its name and sorted labels.
#[derive(Default, Clone)]
struct Counting {
    counters: Arc<Mutex<HashMap<String, Arc<Cell>>>>,
}

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Counting {
    fn get(&self, id: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(id)
            .map_or(0, |c| c.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        let cell = self.counters.lock().unwrap().entry(id).or_default().clone();
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn decisions_are_counted_by_policy_and_outcome() {
    let recorder = Counting::default();
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
        2
    );
    assert_eq!(
        recorder.get("palisade_ratelimit_decisions_total{outcome=rejected,policy=observed}"),
        3
    );
}

#[test]
fn backend_failures_are_counted_by_layer_and_policy() {
    let recorder = Counting::default();
    let error = BackendError::Timeout(std::time::Duration::from_millis(50));
    metrics::with_local_recorder(&recorder, || {
        assert!(OnBackendError::FailOpen.apply("ratelimit", &error));
        assert!(!OnBackendError::FailClosed.apply("ratelimit", &error));
        assert!(!OnBackendError::FailClosed.apply("ratelimit", &error));
    });
    assert_eq!(
        recorder.get("palisade_backend_errors_total{layer=ratelimit,policy=fail_open}"),
        1
    );
    assert_eq!(
        recorder.get("palisade_backend_errors_total{layer=ratelimit,policy=fail_closed}"),
        2
    );
}
