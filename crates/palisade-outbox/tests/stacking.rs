//! Message handlers are tower services, so resilience layers stack onto them as onto HTTP:
//! palisade's circuit breaker and tower's timeout around the inbox, over the real PostgreSQL.
//! A timed-out attempt rolls its transaction back (no effect, no processed mark: the
//! redelivery runs it); an open breaker refuses without touching the handler.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Db, create_effects, effects};
use palisade_breaker::{
    AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, CircuitOpen, ErrorsAreFailures,
    OpenDuration,
};
use palisade_outbox::{Envelope, Handled, InboxLayer, Message};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, timeout::TimeoutLayer};

fn message(id: &str) -> Message<()> {
    Message::new(Envelope {
        event_id: id.to_owned(),
        event_type: "order.placed".into(),
        aggregate_type: "order".into(),
        aggregate_id: "o-1".into(),
        sequence: 1,
        occurred_at: String::new(),
        data: (),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_and_timeout_stack_onto_the_inbox() {
    let db = Db::new().await;
    create_effects(&db).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (calls, schema) = (calls.clone(), db.schema.clone());
        tower::service_fn(move |m: Message<()>| {
            let (calls, schema) = (calls.clone(), schema.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let tx = m.transaction().expect("inside the inbox");
                let mut conn = tx.lock().await?;
                sqlx::query(&format!(
                    "INSERT INTO {schema}.effects (event_id) VALUES ($1)"
                ))
                .bind(m.event_id())
                .execute(&mut *conn)
                .await?;
                drop(conn);
                if m.event_id() == "slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                if m.event_id().starts_with("bad") {
                    return Err::<(), BoxError>("handler failed".into());
                }
                Ok(())
            }
        })
    };
    let policy = BreakerPolicy::builder("consumer")
        .consecutive_failures(3)
        .open_for(OpenDuration::fixed(Duration::from_secs(60)))
        .build()
        .unwrap();
    let mut stack = ServiceBuilder::new()
        .layer(
            CircuitBreakerLayer::new(CircuitBreaker::new(policy))
                .classify(ErrorsAreFailures)
                .on_open(AsError),
        )
        .layer(TimeoutLayer::new(Duration::from_millis(200)))
        .map_err(BoxError::from)
        .layer(InboxLayer::new(
            db.pool().clone(),
            db.schema.clone(),
            "stacked",
        ))
        .service(handler);

    let ok = stack
        .ready()
        .await
        .unwrap()
        .call(message("fine"))
        .await
        .unwrap();
    assert_eq!(ok, Handled::Processed(()));
    // Timed out after writing: rolled back, not marked, so a redelivery runs it.
    let slow = stack.ready().await.unwrap().call(message("slow")).await;
    assert!(slow.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(effects(&db).await, vec!["fine".to_owned()]);
    let marked: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.processed_messages WHERE event_id = 'slow'",
        db.schema
    ))
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(marked, 0, "a timed-out attempt leaves no processed mark");
    // Two more failures (three in a row with the timeout): the breaker opens and refuses
    // without calling the handler.
    for id in ["bad-1", "bad-2"] {
        assert!(
            stack
                .ready()
                .await
                .unwrap()
                .call(message(id))
                .await
                .is_err()
        );
    }
    let before = calls.load(Ordering::SeqCst);
    let refused = stack.ready().await.unwrap().call(message("next")).await;
    let error = refused.unwrap_err();
    assert!(error.is::<CircuitOpen>(), "{error}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "the handler was not called"
    );
}
