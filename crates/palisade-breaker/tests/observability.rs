//! The state gauge is one-hot and transitions are counted; snapshots serialize.

use std::time::Duration;

use palisade_breaker::{BreakerPolicy, CircuitBreaker, OpenDuration, Outcome};
use palisade_testkit::metrics::Recording;

#[tokio::test(start_paused = true)]
async fn state_gauge_is_one_hot_and_transitions_are_counted() {
    let rec = Recording::default();
    let breaker = metrics::with_local_recorder(&rec, || {
        CircuitBreaker::new(
            BreakerPolicy::builder("m")
                .count_window(2)
                .minimum_calls(2)
                .open_for(OpenDuration::fixed(Duration::from_secs(1)))
                .half_open_probes(1)
                .build()
                .unwrap(),
        )
    });
    let gauge = |state: &str| {
        rec.get(&format!(
            "palisade_breaker_state{{breaker=m,state={state}}}"
        ))
    };
    assert_eq!((gauge("closed"), gauge("open")), (1.0, 0.0));
    metrics::with_local_recorder(&rec, || {
        for _ in 0..2 {
            breaker.try_acquire().unwrap().record(Outcome::Failure);
        }
        assert!(breaker.try_acquire().is_err());
    });
    assert_eq!((gauge("closed"), gauge("open")), (0.0, 1.0));
    assert_eq!(
        rec.get("palisade_breaker_calls_total{breaker=m,outcome=failure}"),
        2.0
    );
    assert_eq!(rec.get("palisade_breaker_rejections_total{breaker=m}"), 1.0);
    tokio::time::advance(Duration::from_secs(1)).await;
    metrics::with_local_recorder(&rec, || {
        breaker.try_acquire().unwrap().record(Outcome::Success);
    });
    assert_eq!(
        (gauge("closed"), gauge("open"), gauge("half_open")),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(
        rec.get("palisade_breaker_transitions_total{breaker=m,from=closed,to=open}"),
        1.0
    );
    assert_eq!(
        rec.get("palisade_breaker_transitions_total{breaker=m,from=half_open,to=closed}"),
        1.0
    );
    let json = serde_json::to_value(breaker.snapshot()).unwrap();
    assert_eq!(json["state"], "closed");
    assert_eq!(json["counts"]["calls"], 0);
}

/// Regression: per-key breakers put the key in the `breaker` label — one series per key ever
/// seen. Their metrics now carry the policy name; the state gauge counts breakers per state.
#[tokio::test(start_paused = true)]
async fn per_key_breakers_never_put_the_key_in_a_label() {
    use palisade_breaker::BreakerRegistry;
    let rec = Recording::default();
    let registry = metrics::with_local_recorder(&rec, || {
        let registry = BreakerRegistry::new(
            BreakerPolicy::builder("upstreams")
                .count_window(2)
                .minimum_calls(2)
                .build()
                .unwrap(),
            10,
        );
        for i in 0..25 {
            let breaker = registry.get(&format!("host-{i}.example").as_str().into());
            if i >= 20 {
                for _ in 0..2 {
                    breaker.try_acquire().unwrap().record(Outcome::Failure);
                }
            }
        }
        assert_eq!(registry.len(), 10);
        registry
    });
    let series = rec.series();
    assert!(
        series.iter().all(|s| !s.contains("host-")),
        "a key in a label: {series:?}"
    );
    let gauge = |state: &str| {
        rec.get(&format!(
            "palisade_breaker_state{{breaker=upstreams,state={state}}}"
        ))
    };
    // 10 kept (15 evicted and uncounted): 5 open, 5 closed.
    assert_eq!((gauge("open"), gauge("closed")), (5.0, 5.0));
    assert_eq!(
        rec.get("palisade_breaker_calls_total{breaker=upstreams,outcome=failure}"),
        10.0
    );
    // Breakers that go take their count with them.
    metrics::with_local_recorder(&rec, || drop(registry));
    assert_eq!((gauge("open"), gauge("closed")), (0.0, 0.0));
}
