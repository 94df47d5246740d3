//! Shared helpers of the outbox tests: a migrated schema, writers, recording sinks, a stream
//! reader.

#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_outbox::{NewEvent, Outbox, OutboxEvent, Schema, Sink, SinkError};
use palisade_testkit::TestPostgres;
use sqlx::PgPool;

pub struct Db {
    pub pg: TestPostgres,
    pub schema: Schema,
    pub outbox: Outbox,
}

impl Db {
    pub async fn new() -> Db {
        Self::with_max_connections(20).await
    }

    pub async fn with_max_connections(max: u32) -> Db {
        let pg = TestPostgres::with_max_connections(max).await;
        let schema = Schema::new(&pg.schema).unwrap();
        schema.migrate(&pg.pool).await.unwrap();
        Db {
            outbox: Outbox::new(schema.clone()),
            schema,
            pg,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pg.pool
    }

    /// Writes one event of `aggregate` in its own transaction; commits unless `rollback`.
    pub async fn write(&self, aggregate: &str, event_type: &str, rollback: bool) -> String {
        let mut tx = self.pool().begin().await.unwrap();
        let enqueued = self
            .outbox
            .enqueue(
                &mut tx,
                NewEvent::new(
                    "order",
                    aggregate,
                    event_type,
                    serde_json::json!({"aggregate": aggregate}),
                ),
            )
            .await
            .unwrap();
        if rollback {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
        }
        enqueued.id.to_string()
    }

    pub async fn pending(&self) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}.outbox WHERE published_at IS NULL",
            self.schema
        ))
        .fetch_one(self.pool())
        .await
        .unwrap()
    }
}

/// What a sink saw, in arrival order: (event id, aggregate id, sequence).
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<(String, String, i64)>>>);

impl Received {
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|r| r.0.clone()).collect()
    }

    pub fn all(&self) -> Vec<(String, String, i64)> {
        self.0.lock().unwrap().clone()
    }
}

/// A sink that records what it takes, after a random delay of up to `max_delay_ms`, and
/// answers from `verdict` (by event id; `Ok` when absent).
#[derive(Clone, Default)]
pub struct RecordingSink {
    pub received: Received,
    pub max_delay_ms: u64,
    pub verdict: Arc<Mutex<HashMap<String, SinkError>>>,
    pub unavailable: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for RecordingSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        let mut results = Vec::new();
        for event in events {
            if self.max_delay_ms > 0 {
                let ms = fastrand_ms(self.max_delay_ms);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
                results.push(Err(SinkError::Unavailable("down".into())));
                continue;
            }
            if let Some(error) = self.verdict.lock().unwrap().get(&event.id).cloned() {
                results.push(Err(error));
                continue;
            }
            self.received.0.lock().unwrap().push((
                event.id.clone(),
                event.aggregate_id.clone(),
                event.sequence,
            ));
            results.push(Ok(()));
        }
        results
    }
}

fn fastrand_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) % (max + 1)
}

/// Asserts every aggregate's events arrived in sequence order 1, 2, … (duplicates allowed only
/// as an immediate repeat of an already seen sequence).
pub fn assert_per_aggregate_order(received: &[(String, String, i64)]) {
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, aggregate, sequence) in received {
        let seen = last.entry(aggregate).or_insert(0);
        assert!(
            *sequence <= *seen + 1,
            "aggregate {aggregate}: event {id} with sequence {sequence} arrived after {seen}"
        );
        *seen = (*seen).max(*sequence);
    }
}

/// Creates `<schema>.effects`, where [`flaky_effects`] writes.
pub async fn create_effects(db: &Db) {
    sqlx::query(&format!(
        "CREATE TABLE {}.effects (event_id text NOT NULL)",
        db.schema
    ))
    .execute(db.pool())
    .await
    .unwrap();
}

/// The event ids in `<schema>.effects`, sorted.
pub async fn effects(db: &Db) -> Vec<String> {
    let mut ids: Vec<String> =
        sqlx::query_scalar(&format!("SELECT event_id FROM {}.effects", db.schema))
            .fetch_all(db.pool())
            .await
            .unwrap();
    ids.sort();
    ids
}

/// A handler for inbox tests: writes the event id into `<schema>.effects` in the inbox's
/// transaction, then fails — always for `always_fails`, and for one in three of the other
/// events' first two deliveries — so a failure's write must roll back with the inbox record.
pub fn flaky_effects(
    schema: Schema,
    always_fails: String,
) -> impl tower::Service<
    palisade_outbox::Message<serde_json::Value>,
    Response = (),
    Error = String,
    Future = impl std::future::Future<Output = Result<(), String>> + Send,
> + Clone
+ Send
+ 'static {
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tower::service_fn(
        move |message: palisade_outbox::Message<serde_json::Value>| {
            let (attempts, always_fails, schema) =
                (attempts.clone(), always_fails.clone(), schema.clone());
            async move {
                let tx = message.transaction().expect("inside the inbox");
                let mut db = tx.lock().await.map_err(|e| e.to_string())?;
                sqlx::query(&format!(
                    "INSERT INTO {schema}.effects (event_id) VALUES ($1)"
                ))
                .bind(message.event_id())
                .execute(&mut *db)
                .await
                .map_err(|e| e.to_string())?;
                let unlucky = message.delivery < 3
                    && attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 3 == 0;
                if message.event_id() == always_fails || unlucky {
                    return Err(format!("handler failed on delivery {}", message.delivery));
                }
                Ok(())
            }
        },
    )
}

/// Resolves once `<schema>.effects` has `effects` rows and `consumer` parked `parked` dead
/// letters (or after 15 s, for the assertions to say what is missing).
pub async fn settled(db: &Db, consumer: &str, effects: usize, parked: u64) {
    let dead_letters = palisade_outbox::ConsumerDeadLetters::new(db.pool().clone(), &db.schema);
    for _ in 0..300 {
        if self::effects(db).await.len() == effects
            && dead_letters.count(consumer).await.unwrap() == parked
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
