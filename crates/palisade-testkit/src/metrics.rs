//! [`Recording`]: a `metrics` recorder that keeps every counter and gauge, for tests that
//! check metric names, labels and values.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// Keeps counters and gauges as `f64`s under `name{label=value,…}` (labels sorted).
///
/// Use it scoped (`metrics::with_local_recorder(&rec, || …)`) where the code records
/// synchronously, or install it process-wide (`metrics::set_global_recorder`) in a test binary
/// of its own where the recording happens inside futures.
#[derive(Debug, Default, Clone)]
pub struct Recording(Arc<Mutex<HashMap<String, f64>>>);

#[derive(Debug)]
struct Cell {
    id: String,
    values: Recording,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self.values.0.lock().unwrap_or_else(|p| p.into_inner());
        f(values.entry(self.id.clone()).or_default());
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl Recording {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            id: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: self.clone(),
        })
    }

    /// Every series recorded so far, as `name{label=value,…}`, sorted.
    pub fn series(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// The value of `name{label=value,…}` (labels sorted), 0 if never recorded.
    pub fn get(&self, id: &str) -> f64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0.0)
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
