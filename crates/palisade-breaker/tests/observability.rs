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
