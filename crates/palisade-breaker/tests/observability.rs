//! The state gauge is one-hot and transitions are counted; snapshots serialize.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use palisade_breaker::{BreakerPolicy, CircuitBreaker, OpenDuration, Outcome};

#[derive(Default, Clone)]
struct Values(Arc<Mutex<HashMap<String, f64>>>);

struct Cell {
    id: String,
    values: Values,
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self
            .values
            .0
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.values
            .0
            .lock()
            .unwrap()
            .insert(self.id.clone(), value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        *self
            .values
            .0
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self
            .values
            .0
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.values.0.lock().unwrap().insert(self.id.clone(), value);
    }
}

#[derive(Default, Clone)]
struct Recording(Values);

impl Recording {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            id: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: self.0.clone(),
        })
    }

    fn get(&self, id: &str) -> f64 {
        self.0.0.lock().unwrap().get(id).copied().unwrap_or(0.0)
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

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
