//! The breaker's behaviour under paused time: windows that forget, probes that are capped,
//! open durations that grow, and a layer that never calls the inner service while open.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_breaker::{
    AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, CircuitOpen, ErrorsAreFailures,
    OpenDuration, Outcome, State, Transition,
};
use tower::{Layer, Service, ServiceExt};

fn count_policy(window: u32, min: u32) -> palisade_breaker::BreakerPolicyBuilder {
    BreakerPolicy::builder("t")
        .count_window(window)
        .minimum_calls(min)
        .failure_rate(0.5)
        .open_for(OpenDuration::fixed(Duration::from_secs(10)))
        .half_open_probes(2)
}

fn calls(breaker: &CircuitBreaker, outcome: Outcome, n: usize) {
    for _ in 0..n {
        breaker.try_acquire().unwrap().record(outcome);
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_healthy_run_does_not_hide_a_failure_burst() {
    let breaker = CircuitBreaker::new(count_policy(10, 10).build().unwrap());
    calls(&breaker, Outcome::Success, 1_000_000);
    calls(&breaker, Outcome::Failure, 4);
    assert_eq!(breaker.state(), State::Closed, "4 of the last 10 failed");
    calls(&breaker, Outcome::Failure, 1);
    assert_eq!(breaker.state(), State::Open, "5 of the last 10 failed");
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_seconds() {
    let breaker = CircuitBreaker::new(
        BreakerPolicy::builder("t")
            .time_window(5)
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    calls(&breaker, Outcome::Failure, 3);
    tokio::time::advance(Duration::from_secs(6)).await;
    calls(&breaker, Outcome::Success, 2);
    calls(&breaker, Outcome::Failure, 1);
    assert_eq!(
        breaker.state(),
        State::Closed,
        "old failures left the window"
    );
    calls(&breaker, Outcome::Failure, 1);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_retry_after_then_probes_then_closes() {
    let breaker = CircuitBreaker::new(count_policy(4, 4).build().unwrap());
    let mut events = breaker.subscribe();
    calls(&breaker, Outcome::Failure, 4);
    assert_eq!(breaker.state(), State::Open);
    let refused = breaker.try_acquire().unwrap_err();
    assert_eq!(refused.retry_after, Some(Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(6))
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    // Half-open: two probes at most.
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.try_acquire().unwrap_err().state, State::HalfOpen);
    a.record(Outcome::Success);
    b.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.snapshot().counts.calls,
        0,
        "closing empties the window"
    );
    let seen: Vec<(State, State)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|t: Transition| (t.from, t.to))
        .collect();
    assert_eq!(
        seen,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failing_probes_reopen_for_longer_each_time() {
    let breaker = CircuitBreaker::new(
        count_policy(2, 2)
            .open_for(OpenDuration {
                base: Duration::from_secs(1),
                multiplier: 2.0,
                max: Duration::from_secs(5),
                jitter: 0.0,
            })
            .build()
            .unwrap(),
    );
    calls(&breaker, Outcome::Failure, 2);
    for expected in [1, 2, 4, 5, 5] {
        let wait = breaker.try_acquire().unwrap_err().retry_after.unwrap();
        assert_eq!(wait, Duration::from_secs(expected));
        tokio::time::advance(wait).await;
        // One failed probe of two is a 50 % failure rate: reopen at once.
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(breaker.state(), State::Open);
    }
    // Recovery resets the growth.
    tokio::time::advance(Duration::from_secs(5)).await;
    calls(&breaker, Outcome::Success, 2);
    assert_eq!(breaker.state(), State::Closed);
    calls(&breaker, Outcome::Failure, 2);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_and_slow_calls_trip() {
    let breaker = CircuitBreaker::new(
        count_policy(100, 100)
            .consecutive_failures(3)
            .build()
            .unwrap(),
    );
    calls(&breaker, Outcome::Failure, 2);
    calls(&breaker, Outcome::Success, 1);
    calls(&breaker, Outcome::Failure, 2);
    assert_eq!(breaker.state(), State::Closed);
    calls(&breaker, Outcome::Failure, 1);
    assert_eq!(breaker.state(), State::Open);

    let slow = CircuitBreaker::new(
        count_policy(4, 4)
            .slow_calls(Duration::from_secs(2), 0.5)
            .build()
            .unwrap(),
    );
    for _ in 0..2 {
        let permit = slow.try_acquire().unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        permit.record(Outcome::Success);
    }
    calls(&slow, Outcome::Success, 1);
    assert_eq!(slow.state(), State::Closed);
    calls(&slow, Outcome::Success, 1);
    assert_eq!(slow.state(), State::Open, "2 slow of 4");
    assert_eq!(slow.snapshot().counts.slow, 2);
}

#[tokio::test(start_paused = true)]
async fn operator_states() {
    let breaker = CircuitBreaker::new(count_policy(2, 2).build().unwrap());
    breaker.force_open();
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after, None);
    breaker.disable();
    calls(&breaker, Outcome::Failure, 10);
    assert_eq!(breaker.state(), State::Disabled);
    breaker.metrics_only();
    calls(&breaker, Outcome::Failure, 10);
    assert_eq!(breaker.state(), State::MetricsOnly);
    assert_eq!(breaker.snapshot().counts.failures, 2);
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().counts.calls, 0);
}

/// Many tasks race for half-open probe slots: never more than the cap at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_probes_are_capped_under_concurrency() {
    for round in 0..50 {
        let breaker = CircuitBreaker::new(
            BreakerPolicy::builder("race")
                .count_window(2)
                .minimum_calls(2)
                .open_for(OpenDuration::fixed(Duration::from_millis(1)))
                .half_open_probes(3)
                .build()
                .unwrap(),
        );
        calls(&breaker, Outcome::Failure, 2);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (breaker, in_flight, peak, admitted) = (
                    breaker.clone(),
                    in_flight.clone(),
                    peak.clone(),
                    admitted.clone(),
                );
                tokio::spawn(async move {
                    if let Ok(permit) = breaker.try_acquire() {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        // Keep the probes pending: the breaker stays half-open.
                        std::mem::forget(permit);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3, "round {round}");
        assert_eq!(admitted.load(Ordering::SeqCst), 3, "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_never_calls_the_inner_service_while_open() {
    let breaker = CircuitBreaker::new(count_policy(3, 3).build().unwrap());
    let calls_made = Arc::new(AtomicUsize::new(0));
    let counter = calls_made.clone();
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(tower::service_fn(
        move |req: Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let status = if req.uri().path() == "/missing" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            async move {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = status;
                Ok::<_, Infallible>(r)
            }
        },
    ));
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    // 4xx are not failures.
    for _ in 0..10 {
        let r = svc
            .ready()
            .await
            .unwrap()
            .call(get("/missing"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    for _ in 0..3 {
        svc.ready().await.unwrap().call(get("/")).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
    let before = calls_made.load(Ordering::SeqCst);
    for _ in 0..5 {
        let r = svc.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "10");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(calls_made.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn around_a_client_the_refusal_is_an_error() {
    let breaker = CircuitBreaker::new(count_policy(2, 2).build().unwrap());
    let svc = CircuitBreakerLayer::new(breaker)
        .classify(ErrorsAreFailures)
        .on_open(AsError)
        .layer(tower::service_fn(|_: ()| async {
            Err::<(), tower::BoxError>("connection refused".into())
        }));
    for _ in 0..2 {
        assert!(svc.clone().oneshot(()).await.is_err());
    }
    let err = svc.oneshot(()).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("a CircuitOpen error");
    assert_eq!(open.state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probes_free_their_slot() {
    let breaker = CircuitBreaker::new(count_policy(2, 2).build().unwrap());
    calls(&breaker, Outcome::Failure, 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());
    drop(a);
    let c = breaker.try_acquire().unwrap();
    b.record(Outcome::Success);
    c.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn policies_load_from_toml_with_clear_errors() {
    let p: BreakerPolicy = toml::from_str(
        r#"
        name = "db"
        window = { seconds = 30 }
        minimum_calls = 10
        open = "15s"
        "#,
    )
    .unwrap();
    assert_eq!(p.window(), palisade_breaker::Window::Time(30));
    let e = toml::from_str::<BreakerPolicy>(
        r#"
        name = "db"
        failure_rate = 1.5
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("breaker `db`: failure_rate must be in (0, 1]"),
        "{e}"
    );
    let e = toml::from_str::<BreakerPolicy>("name = \"db\"\nfailure_treshold = 0.5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("failure_treshold"), "{e}");
}
