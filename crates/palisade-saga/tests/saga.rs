//! Sagas over the real PostgreSQL: completion, compensation in reverse order, a parked
//! compensation, one driver per saga, and a saga resumed by another runner after its driver
//! died mid-step — each step executed once by a downstream that honours idempotency keys.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_outbox::Schema;
use palisade_saga::{
    DefinitionError, SagaDefinition, SagaRunner, SagaStatus, Step, StepCall, StepRefused,
    StepStatus, step_service,
};
use palisade_testkit::TestPostgres;
use serde_json::{Value, json};
use tower::BoxError;

/// A downstream that executes each idempotency key once and records every call.
#[derive(Clone, Default)]
struct Downstream {
    executed: Arc<Mutex<Vec<String>>>,
    keys: Arc<Mutex<HashSet<String>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    /// Actions that refuse for certain (by name): `StepRefused`.
    failing: Arc<Mutex<HashSet<String>>>,
    /// Actions that fail with an unknown outcome (by name): a plain error.
    uncertain: Arc<Mutex<HashSet<String>>>,
    /// Actions that never answer (by name), until cleared.
    hanging: Arc<Mutex<HashSet<String>>>,
}

impl Downstream {
    fn service(&self, action: &'static str) -> palisade_saga::StepService {
        let me = self.clone();
        step_service(tower::service_fn(move |call: StepCall| {
            let me = me.clone();
            async move {
                *me.calls
                    .lock()
                    .unwrap()
                    .entry(action.to_owned())
                    .or_default() += 1;
                if me.failing.lock().unwrap().contains(action) {
                    return Err::<Value, BoxError>(StepRefused(format!("{action} refused")).into());
                }
                if me.uncertain.lock().unwrap().contains(action) {
                    return Err(format!("{action}: connection reset").into());
                }
                if me.keys.lock().unwrap().insert(call.idempotency_key.clone()) {
                    me.executed.lock().unwrap().push(action.to_owned());
                }
                while me.hanging.lock().unwrap().contains(action) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(json!({"action": action}))
            }
        }))
    }

    fn checkout(&self) -> SagaDefinition {
        SagaDefinition::new(
            "checkout",
            vec![
                Step::new("reserve", self.service("reserve"), self.service("release")),
                Step::new("charge", self.service("charge"), self.service("refund")).attempts(2),
                Step::new("ship", self.service("ship"), self.service("cancel")),
            ],
        )
        .unwrap()
        .compensation_attempts(3)
    }

    fn executed(&self) -> Vec<String> {
        self.executed.lock().unwrap().clone()
    }
}

/// Waits (bounded) until step `i` of `saga` is recorded as running: its driver holds the lease.
async fn running(runner: &SagaRunner, saga: &str, i: usize) {
    for _ in 0..500 {
        if let Some(record) = runner.get(saga).await.unwrap() {
            if record.state.steps[i].status == StepStatus::Running {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("step {i} of {saga} never started");
}

/// A migrated runner over the test schema with `definition` and `lease`.
async fn runner_for(pg: &TestPostgres, definition: SagaDefinition, lease: Duration) -> SagaRunner {
    let runner = SagaRunner::new(
        pg.pool.clone(),
        Schema::new(&pg.schema).unwrap(),
        vec![definition],
    )
    .lease(lease)
    .poll_interval(Duration::from_millis(20));
    runner.migrate().await.unwrap();
    runner
}

async fn runner(pg: &TestPostgres, downstream: &Downstream) -> SagaRunner {
    runner_for(pg, downstream.checkout(), Duration::from_millis(400)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_completes_each_step_once() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    let runner = runner(&pg, &downstream).await;
    runner
        .start("co-1", "checkout", json!({"order": "o-1"}))
        .await
        .unwrap();
    assert!(matches!(
        runner.start("co-1", "checkout", json!({})).await,
        Err(palisade_saga::SagaError::Exists(_))
    ));
    assert_eq!(
        runner.drive("co-1").await.unwrap(),
        Some(SagaStatus::Completed)
    );
    assert_eq!(downstream.executed(), vec!["reserve", "charge", "ship"]);
    let record = runner.get("co-1").await.unwrap().unwrap();
    assert!(
        record
            .state
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Done)
    );
    // A finished saga is not driven again.
    assert_eq!(runner.drive("co-1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_compensates_the_done_ones_in_reverse() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.failing.lock().unwrap().insert("ship".into());
    let runner = runner(&pg, &downstream).await;
    runner.start("co-2", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-2").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    assert_eq!(
        downstream.executed(),
        vec!["reserve", "charge", "refund", "release"]
    );
    let state = runner.get("co-2").await.unwrap().unwrap().state;
    let statuses: Vec<StepStatus> = state.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        vec![
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Failed
        ]
    );
    assert_eq!(state.failure().unwrap().0, "ship");
    // The failing step was attempted as often as its policy says (3 by default).
    assert_eq!(downstream.calls.lock().unwrap()["ship"], 3);
}

/// A step whose outcome is unknown (no definite refusal) may have happened: it is compensated
/// too, before the steps before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncertain_failure_is_compensated_as_well() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.uncertain.lock().unwrap().insert("ship".into());
    let runner = runner(&pg, &downstream).await;
    runner.start("co-u", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-u").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    assert_eq!(
        downstream.executed(),
        vec!["reserve", "charge", "cancel", "refund", "release"]
    );
    let state = runner.get("co-u").await.unwrap().unwrap().state;
    assert_eq!(state.steps[2].status, StepStatus::Compensated);
    assert_eq!(state.failure().unwrap().0, "ship");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_parks_the_saga() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream
        .failing
        .lock()
        .unwrap()
        .extend(["charge".to_owned(), "release".to_owned()]);
    let runner = runner(&pg, &downstream).await;
    runner.start("co-3", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-3").await.unwrap(),
        Some(SagaStatus::Failed)
    );
    let state = runner.get("co-3").await.unwrap().unwrap().state;
    assert_eq!(state.steps[0].status, StepStatus::CompensationFailed);
    assert_eq!(downstream.calls.lock().unwrap()["release"], 3);
    assert_eq!(downstream.calls.lock().unwrap()["charge"], 2);
}

/// The driver dies mid-step (its future dropped, as a SIGKILL would); once its lease expires
/// another runner resumes the saga, calls the in-flight step again with the same key, and the
/// downstream executes every step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_is_resumed_by_another_runner_and_no_step_runs_twice() {
    for round in 0..3 {
        let pg = TestPostgres::connect().await;
        let downstream = Downstream::default();
        downstream.hanging.lock().unwrap().insert("charge".into());
        let first = runner(&pg, &downstream).await;
        let second = runner(&pg, &downstream).await;
        first.start("co-4", "checkout", json!({})).await.unwrap();
        let dying = tokio::spawn({
            let first = first.clone();
            async move { first.drive("co-4").await }
        });
        // Charge is in flight; the second runner cannot take the saga while the lease is
        // renewed (two lease lengths and more).
        running(&first, "co-4", 1).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            second.drive("co-4").await.unwrap(),
            None,
            "round {round}: held"
        );
        dying.abort();
        let _ = dying.await;
        downstream.hanging.lock().unwrap().clear();
        // The lease lapses; the second runner's loop picks the saga up.
        let stop = Arc::new(tokio::sync::Notify::new());
        let loop_task = tokio::spawn({
            let (second, stop) = (second.clone(), stop.clone());
            async move { second.run(stop.notified_owned()).await }
        });
        let mut status = None;
        for _ in 0..300 {
            let state = second.get("co-4").await.unwrap().unwrap().state;
            if state.status.is_terminal() {
                status = Some(state.status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.notify_waiters();
        loop_task.await.unwrap();
        assert_eq!(status, Some(SagaStatus::Completed), "round {round}");
        assert_eq!(downstream.executed(), vec!["reserve", "charge", "ship"]);
        assert_eq!(
            downstream.calls.lock().unwrap()["charge"],
            2,
            "called again on resume"
        );
    }
}

#[test]
fn definitions_need_steps_with_distinct_names() {
    let d = Downstream::default();
    assert_eq!(
        SagaDefinition::new("x", vec![]).unwrap_err(),
        DefinitionError::Empty
    );
    let twice = SagaDefinition::new(
        "x",
        vec![
            Step::new("a", d.service("a"), d.service("b")),
            Step::new("a", d.service("a"), d.service("b")),
        ],
    );
    assert_eq!(
        twice.unwrap_err(),
        DefinitionError::DuplicateStep("a".into())
    );
}

/// Regression: a claim by the same runner (the HTTP handler's drive and the runner's own scan)
/// was let in by the owner check, and two drivers ran one saga. Each claim now has its own
/// token: the second finds the lease held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_never_drives_a_saga_twice() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.hanging.lock().unwrap().insert("charge".into());
    let runner = runner(&pg, &downstream).await;
    runner.start("co-6", "checkout", json!({})).await.unwrap();
    let first = tokio::spawn({
        let runner = runner.clone();
        async move { runner.drive("co-6").await }
    });
    running(&runner, "co-6", 1).await;
    let second = tokio::time::timeout(Duration::from_secs(2), runner.drive("co-6")).await;
    assert!(matches!(second, Ok(Ok(None))), "{second:?}");
    downstream.hanging.lock().unwrap().clear();
    assert_eq!(first.await.unwrap().unwrap(), Some(SagaStatus::Completed));
    assert_eq!(downstream.calls.lock().unwrap()["charge"], 1);
}

/// Progress goes out as outbox events, the terminal one with the terminal state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_published_through_the_outbox() {
    let pg = TestPostgres::connect().await;
    let schema = Schema::new(&pg.schema).unwrap();
    schema.migrate(&pg.pool).await.unwrap();
    let downstream = Downstream::default();
    let runner = runner(&pg, &downstream)
        .await
        .publish_to(palisade_outbox::Outbox::new(schema.clone()));
    runner.start("co-7", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-7").await.unwrap(),
        Some(SagaStatus::Completed)
    );
    let types: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT type FROM {} WHERE aggregateid = 'co-7' ORDER BY sequence",
        schema.table("outbox")
    ))
    .fetch_all(&pg.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        vec![
            "saga.step_done",
            "saga.step_done",
            "saga.step_done",
            "saga.completed"
        ]
    );
}

/// A saga started by a message handler inside the inbox's transaction exists exactly when the
/// message is marked processed: a failed handling leaves no saga, the redelivery starts it
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_started_from_a_consumed_event_exists_iff_the_event_was_processed() {
    use palisade_outbox::{Envelope, Handled, InboxLayer, Message};
    use tower::{Layer, Service, ServiceExt};
    let pg = TestPostgres::connect().await;
    let schema = Schema::new(&pg.schema).unwrap();
    schema.migrate(&pg.pool).await.unwrap();
    let downstream = Downstream::default();
    let runner = runner(&pg, &downstream).await;
    let fail_once = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let (runner, fail_once) = (runner.clone(), fail_once.clone());
        tower::service_fn(move |message: Message<Value>| {
            let (runner, fail_once) = (runner.clone(), fail_once.clone());
            async move {
                let tx = message.transaction().expect("inside the inbox");
                let mut conn = tx.lock().await?;
                let id = format!("co-{}", message.event_id());
                runner
                    .start_in(&mut conn, &id, "checkout", message.data().clone())
                    .await?;
                if fail_once.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    return Err::<(), BoxError>("crashed after starting".into());
                }
                Ok(())
            }
        })
    };
    let mut inbox = InboxLayer::new(pg.pool.clone(), schema, "checkouts").layer(handler);
    let message = Message::new(Envelope {
        event_id: "e-1".into(),
        event_type: "order.placed".into(),
        aggregate_type: "order".into(),
        aggregate_id: "o-1".into(),
        sequence: 1,
        occurred_at: String::new(),
        data: json!({"order_id": "o-1"}),
    });
    assert!(
        inbox
            .ready()
            .await
            .unwrap()
            .call(message.clone())
            .await
            .is_err()
    );
    assert!(
        runner.get("co-e-1").await.unwrap().is_none(),
        "rolled back with the handling"
    );
    let again = inbox
        .ready()
        .await
        .unwrap()
        .call(message.clone())
        .await
        .unwrap();
    assert_eq!(again, Handled::Processed(()));
    let third = inbox.ready().await.unwrap().call(message).await.unwrap();
    assert_eq!(third, Handled::Duplicate);
    assert_eq!(
        runner.drive("co-e-1").await.unwrap(),
        Some(SagaStatus::Completed)
    );
}

/// Past the saga's deadline the step still failing counts as failed (outcome unknown) and the
/// saga compensates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_turns_a_saga_around() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.uncertain.lock().unwrap().insert("charge".into());
    let definition = SagaDefinition::new(
        "checkout",
        vec![
            Step::new(
                "reserve",
                downstream.service("reserve"),
                downstream.service("release"),
            ),
            Step::new(
                "charge",
                downstream.service("charge"),
                downstream.service("refund"),
            )
            .attempts(1000),
        ],
    )
    .unwrap()
    .deadline(Duration::from_millis(500));
    let runner = runner_for(&pg, definition, Duration::from_millis(600)).await;
    runner.start("co-8", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-8").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    let state = runner.get("co-8").await.unwrap().unwrap().state;
    assert_eq!(
        state.failure(),
        Some(("charge", "the saga's deadline passed"))
    );
    assert!(downstream.calls.lock().unwrap()["charge"] < 1000);
    assert_eq!(downstream.executed(), vec!["reserve", "refund", "release"]);
}

/// Steps are tower services, so resilience layers stack on them: a circuit breaker opened by
/// the first failures refuses the later attempts without calling the downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_stacks_on_a_step() {
    use palisade_breaker::{
        AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, ErrorsAreFailures,
        OpenDuration,
    };
    use tower::Layer;
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.uncertain.lock().unwrap().insert("charge".into());
    let policy = BreakerPolicy::builder("payments")
        .consecutive_failures(2)
        .open_for(OpenDuration::fixed(Duration::from_secs(60)))
        .build()
        .unwrap();
    let guarded = CircuitBreakerLayer::new(CircuitBreaker::new(policy))
        .classify(ErrorsAreFailures)
        .on_open(AsError)
        .layer(downstream.service("charge"));
    let definition = SagaDefinition::new(
        "checkout",
        vec![
            Step::new(
                "reserve",
                downstream.service("reserve"),
                downstream.service("release"),
            ),
            Step::new(
                "charge",
                step_service(guarded),
                downstream.service("refund"),
            )
            .attempts(5),
        ],
    )
    .unwrap();
    let runner = runner_for(&pg, definition, Duration::from_secs(2)).await;
    runner.start("co-9", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-9").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    assert_eq!(
        downstream.calls.lock().unwrap()["charge"],
        2,
        "attempts 3-5 refused by the breaker"
    );
    let state = runner.get("co-9").await.unwrap().unwrap().state;
    assert_eq!(state.steps[1].attempts, 5);
}

/// A step that does not answer within its timeout has an unknown outcome: compensated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timing_out_is_compensated() {
    let pg = TestPostgres::connect().await;
    let downstream = Downstream::default();
    downstream.hanging.lock().unwrap().insert("charge".into());
    let definition = SagaDefinition::new(
        "checkout",
        vec![
            Step::new(
                "reserve",
                downstream.service("reserve"),
                downstream.service("release"),
            ),
            Step::new(
                "charge",
                downstream.service("charge"),
                downstream.service("refund"),
            )
            .timeout(Duration::from_millis(100))
            .attempts(2),
        ],
    )
    .unwrap();
    let runner = runner_for(&pg, definition, Duration::from_secs(2)).await;
    runner.start("co-10", "checkout", json!({})).await.unwrap();
    assert_eq!(
        runner.drive("co-10").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    let state = runner.get("co-10").await.unwrap().unwrap().state;
    assert!(
        state.failure().unwrap().1.contains("timed out"),
        "{state:?}"
    );
    // The charge ran (its key is recorded), its answer never came: refunded.
    assert_eq!(
        downstream.executed(),
        vec!["reserve", "charge", "refund", "release"]
    );
}
