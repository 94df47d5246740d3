//! Saga step overhead for BENCHMARKS.md: N three-step sagas driven by the runner over the
//! machine's PostgreSQL (`DATABASE_URL`, a fresh schema), against calling the same three step
//! services directly.
//!
//! ```text
//! saga_load N
//! ```

use std::time::Instant;

use palisade_outbox::Schema;
use palisade_saga::{SagaDefinition, SagaRunner, Step, StepCall, StepService, step_service};
use palisade_testkit::TestPostgres;
use serde_json::{Value, json};
use tower::ServiceExt;

fn noop() -> StepService {
    step_service(tower::service_fn(|call: StepCall| async move {
        Ok::<Value, std::io::Error>(json!({"key": call.idempotency_key}))
    }))
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let pg = TestPostgres::with_max_connections(10).await;
    let definition = SagaDefinition::new(
        "bench",
        ["a", "b", "c"]
            .into_iter()
            .map(|s| Step::new(s, noop(), noop()))
            .collect(),
    )
    .unwrap();
    let runner = SagaRunner::new(
        pg.pool.clone(),
        Schema::new(&pg.schema).unwrap(),
        vec![definition],
    );
    runner.migrate().await.unwrap();

    let start = Instant::now();
    for i in 0..n {
        for step in ["a", "b", "c"] {
            let call = StepCall {
                saga_id: format!("d-{i}"),
                step: step.into(),
                idempotency_key: format!("d-{i}:{step}:action"),
                input: json!({}),
            };
            noop().oneshot(call).await.unwrap();
        }
    }
    let direct = start.elapsed();

    let start = Instant::now();
    for i in 0..n {
        let id = format!("s-{i}");
        runner.start(&id, "bench", json!({})).await.unwrap();
        runner.drive(&id).await.unwrap();
    }
    let sagas = start.elapsed();
    let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e6 / (n * 3) as f64;
    println!(
        "saga n={n} steps=3 direct_us_per_step={:.1} saga_us_per_step={:.0} overhead_us_per_step={:.0} sagas_per_sec={:.0}",
        per_step(direct),
        per_step(sagas),
        per_step(sagas) - per_step(direct),
        n as f64 / sagas.as_secs_f64()
    );
}
