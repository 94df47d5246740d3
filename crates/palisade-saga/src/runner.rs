//! [`SagaRunner`]: drives sagas persisted in PostgreSQL, one instance per saga at a time (a
//! lease on its row), resuming what a dead instance left.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use palisade_core::backoff::{self, Jitter};
use palisade_outbox::{NewEvent, Outbox, Schema};
use serde_json::Value;
use sqlx::{Executor, PgConnection, PgPool, Row};
use tower::ServiceExt;

use crate::{
    definition::{SagaDefinition, StepCall},
    state::{Next, SagaState, SagaStatus},
};

const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_sagas.sql")];

/// A saga error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// No definition registered under this name.
    #[error("no saga definition named {0:?}")]
    UnknownDefinition(String),
    /// A saga with this id exists.
    #[error("a saga {0:?} exists")]
    Exists(String),
    /// Another instance holds the saga (or took it over): this one stopped driving it.
    #[error("the lease on saga {0:?} is held elsewhere")]
    LeaseLost(String),
    /// A stored state does not decode.
    #[error("saga {saga}: {reason}")]
    Corrupt {
        /// The saga.
        saga: String,
        /// Why.
        reason: String,
    },
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox refused a progress event.
    #[error("outbox: {0}")]
    Outbox(#[from] palisade_outbox::OutboxError),
}

/// A claim: the record as claimed, whether the saga's deadline passed, and the lease token
/// every later write must carry.
struct Claimed {
    record: SagaRecord,
    late: bool,
    token: String,
}

/// A saga as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaRecord {
    /// Its id.
    pub saga_id: String,
    /// Its definition's name.
    pub definition: String,
    /// Its state.
    pub state: SagaState,
    /// Its input.
    pub input: Value,
}

/// Drives sagas: [`start`](Self::start) inserts one, [`drive`](Self::drive) runs it to a
/// terminal state, [`run`](Self::run) keeps picking up sagas nobody holds (new ones, and those
/// of an instance that died — its lease expired).
///
/// The state is written **before** each call (the step is `running`, attempt n) and **after**
/// it (done, failed, compensated), each time under the lease — a token fresh for each claim
/// (`WHERE lease_token = mine`): a driver whose lease lapsed and was taken, even by another
/// driver in the same process, stops at its next write. The terminal progress event is
/// written in the same transaction as the terminal state. `run` drives at most 16 sagas at
/// once per runner; dropping its future aborts them (their leases lapse for others). A resumed saga re-runs a `running`
/// step with the same idempotency key ([`StepCall::idempotency_key`]), so a downstream that
/// honours it executes the step once. The lease is renewed while a call runs.
#[derive(Clone)]
pub struct SagaRunner {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    pool: PgPool,
    schema: Schema,
    definitions: HashMap<String, Arc<SagaDefinition>>,
    owner: String,
    lease: Duration,
    outbox: Option<Outbox>,
    poll_interval: Duration,
}

impl std::fmt::Debug for SagaRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaRunner")
            .field("schema", &self.inner.schema)
            .field("owner", &self.inner.owner)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl SagaRunner {
    /// A runner over `sagas` in `schema`, with these definitions: a 10 s lease, polling for
    /// unheld sagas every 250 ms.
    pub fn new(pool: PgPool, schema: Schema, definitions: Vec<SagaDefinition>) -> SagaRunner {
        SagaRunner {
            inner: Arc::new(Inner {
                pool,
                schema,
                definitions: definitions
                    .into_iter()
                    .map(|d| (d.name.clone(), Arc::new(d)))
                    .collect(),
                owner: uuid::Uuid::new_v4().to_string(),
                lease: Duration::from_secs(10),
                outbox: None,
                poll_interval: Duration::from_millis(250),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> SagaRunner {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// How long a saga stays with this instance without a renewal (default 10 s): the time
    /// another instance waits before taking over from a dead one.
    pub fn lease(self, lease: Duration) -> SagaRunner {
        self.edit(|i| i.lease = lease.max(Duration::from_millis(200)))
    }

    /// How often [`run`](Self::run) looks for sagas nobody holds.
    pub fn poll_interval(self, interval: Duration) -> SagaRunner {
        self.edit(|i| i.poll_interval = interval)
    }

    /// Emits progress as outbox events (`saga.step_done`, `saga.step_failed`,
    /// `saga.step_compensated`, `saga.completed`, `saga.compensated`, `saga.failed`; aggregate
    /// type = the definition's name, id = the saga's), in the same transaction as each state
    /// write.
    pub fn publish_to(self, outbox: Outbox) -> SagaRunner {
        self.edit(|i| i.outbox = Some(outbox))
    }

    fn table(&self) -> String {
        self.inner.schema.table("sagas")
    }

    /// Creates the table if missing.
    pub async fn migrate(&self) -> Result<(), SagaError> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("palisade-saga:{}", self.inner.schema))
            .execute(&mut *tx)
            .await?;
        for migration in MIGRATIONS {
            tx.execute(
                migration
                    .replace("{schema}", &self.inner.schema.to_string())
                    .as_str(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Inserts saga `saga_id` of `definition` with `input`; a runner picks it up (call
    /// [`drive`](Self::drive) to run it here and now).
    pub async fn start(
        &self,
        saga_id: &str,
        definition: &str,
        input: Value,
    ) -> Result<(), SagaError> {
        let mut conn = self.inner.pool.acquire().await?;
        self.start_in(&mut conn, saga_id, definition, input).await
    }

    /// [`start`](Self::start) on `conn` — inside the caller's transaction (an inbox handler
    /// starting a saga from a consumed event: the saga exists if and only if the event is
    /// marked processed).
    pub async fn start_in(
        &self,
        conn: &mut PgConnection,
        saga_id: &str,
        definition: &str,
        input: Value,
    ) -> Result<(), SagaError> {
        let def = self
            .inner
            .definitions
            .get(definition)
            .ok_or_else(|| SagaError::UnknownDefinition(definition.to_owned()))?;
        let state = SagaState::new(def.step_names());
        let inserted = sqlx::query(&format!(
            "INSERT INTO {} (saga_id, definition, status, state, input, deadline) \
             VALUES ($1, $2, 'running', $3::jsonb, $4::jsonb, now() + $5 * interval '1 millisecond') \
             ON CONFLICT (saga_id) DO NOTHING",
            self.table()
        ))
        .bind(saga_id)
        .bind(definition)
        .bind(json_text(&state)?)
        .bind(input.to_string())
        .bind(def.deadline.map(|d| d.as_millis() as f64))
        .execute(conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(SagaError::Exists(saga_id.to_owned()));
        }
        metrics::counter!("palisade_saga_started_total", "saga" => definition.to_owned())
            .increment(1);
        Ok(())
    }

    /// The saga `saga_id`.
    pub async fn get(&self, saga_id: &str) -> Result<Option<SagaRecord>, SagaError> {
        let row = sqlx::query(&format!(
            "SELECT definition, state, input FROM {} WHERE saga_id = $1",
            self.table()
        ))
        .bind(saga_id)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|row| record(saga_id, &row)).transpose()
    }

    /// Takes the lease on `saga_id` when nobody holds it (free or expired) with a fresh token;
    /// `None` when it is held — by another instance or another driver here — or terminal.
    async fn claim(&self, saga_id: &str) -> Result<Option<Claimed>, SagaError> {
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(&format!(
            "UPDATE {} SET lease_owner = $2, lease_token = $3, updated_at = now(), \
                 lease_until = now() + $4 * interval '1 millisecond' \
             WHERE saga_id = $1 AND status IN ('running', 'compensating') \
               AND (lease_until IS NULL OR lease_until < now()) \
             RETURNING definition, state, input, (deadline IS NOT NULL AND deadline < now()) AS late",
            self.table()
        ))
        .bind(saga_id)
        .bind(&self.inner.owner)
        .bind(&token)
        .bind(self.inner.lease.as_millis() as f64)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|row| {
            Ok(Claimed {
                record: record(saga_id, &row)?,
                late: row.try_get("late")?,
                token,
            })
        })
        .transpose()
    }

    /// Writes `state` under our lease (renewing it), with an optional progress event — and,
    /// when the state is terminal, the terminal event in the same transaction.
    async fn persist(
        &self,
        token: &str,
        record: &SagaRecord,
        event: Option<(&str, Value)>,
    ) -> Result<(), SagaError> {
        let mut tx = self.inner.pool.begin().await?;
        let status = serde_json::to_value(record.state.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let written = sqlx::query(&format!(
            "UPDATE {} SET state = $2::jsonb, status = $3, updated_at = now(), \
             lease_until = now() + $5 * interval '1 millisecond' \
             WHERE saga_id = $1 AND lease_token = $4",
            self.table()
        ))
        .bind(&record.saga_id)
        .bind(json_text(&record.state)?)
        .bind(&status)
        .bind(token)
        .bind(self.inner.lease.as_millis() as f64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 {
            return Err(SagaError::LeaseLost(record.saga_id.clone()));
        }
        if let Some(outbox) = &self.inner.outbox {
            let terminal = match record.state.status {
                SagaStatus::Completed => Some("saga.completed"),
                SagaStatus::Compensated => Some("saga.compensated"),
                SagaStatus::Failed => Some("saga.failed"),
                _ => None,
            };
            let events = event
                .into_iter()
                .chain(terminal.map(|kind| (kind, progress(record, None))));
            for (event_type, payload) in events {
                outbox
                    .enqueue(
                        &mut tx,
                        NewEvent::new(&record.definition, &record.saga_id, event_type, payload),
                    )
                    .await?;
            }
        }
        tx.commit().await?;
        if let Some(kind) = match record.state.status {
            SagaStatus::Completed => Some("completed"),
            SagaStatus::Compensated => Some("compensated"),
            SagaStatus::Failed => Some("failed"),
            _ => None,
        } {
            metrics::counter!("palisade_saga_finished_total", "saga" => record.definition.clone(), "status" => kind)
                .increment(1);
        }
        Ok(())
    }

    async fn renew(&self, saga_id: &str, token: &str) -> Result<bool, SagaError> {
        let renewed = sqlx::query(&format!(
            "UPDATE {} SET lease_until = now() + $3 * interval '1 millisecond' \
             WHERE saga_id = $1 AND lease_token = $2",
            self.table()
        ))
        .bind(saga_id)
        .bind(token)
        .bind(self.inner.lease.as_millis() as f64)
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Calls `service` with `call` within `timeout`, renewing the lease meanwhile. `Ok(Err)`
    /// carries the reason and whether the step said for certain that it did not happen
    /// ([`StepRefused`](crate::StepRefused)); [`SagaError::LeaseLost`] when the lease went.
    async fn call(
        &self,
        saga_id: &str,
        token: &str,
        service: crate::definition::StepService,
        call: StepCall,
        timeout: Duration,
    ) -> Result<Result<Value, (String, bool)>, SagaError> {
        let attempt = tokio::time::timeout(timeout, service.oneshot(call));
        let mut attempt = std::pin::pin!(attempt);
        let mut renewal = tokio::time::interval(self.inner.lease / 3);
        renewal.tick().await;
        loop {
            tokio::select! {
                outcome = &mut attempt => {
                    return Ok(match outcome {
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(error)) => {
                            let definite = error.is::<crate::definition::StepRefused>();
                            Err((error.to_string(), definite))
                        }
                        Err(_) => Err((format!("timed out after {timeout:?}"), false)),
                    });
                }
                _ = renewal.tick() => {
                    if !self.renew(saga_id, token).await? {
                        return Err(SagaError::LeaseLost(saga_id.to_owned()));
                    }
                }
            }
        }
    }

    /// Waits before the next attempt (at most a third of the lease, renewing it after).
    async fn pause(
        &self,
        saga_id: &str,
        token: &str,
        attempt: u32,
        previous: Duration,
    ) -> Result<Duration, SagaError> {
        let wait = backoff::delay(
            Jitter::Decorrelated,
            Duration::from_millis(50),
            (self.inner.lease / 3).min(Duration::from_secs(2)),
            attempt,
            previous,
            palisade_core::random::unit(),
        );
        tokio::time::sleep(wait).await;
        if !self.renew(saga_id, token).await? {
            return Err(SagaError::LeaseLost(saga_id.to_owned()));
        }
        Ok(wait)
    }

    /// Runs saga `saga_id` here to a terminal state, if nobody holds it; its final status, or
    /// `None` when it is held (elsewhere, or by another driver here) or already finished.
    pub async fn drive(&self, saga_id: &str) -> Result<Option<SagaStatus>, SagaError> {
        let Some(Claimed {
            mut record,
            mut late,
            token,
        }) = self.claim(saga_id).await?
        else {
            return Ok(None);
        };
        let definition = self
            .inner
            .definitions
            .get(&record.definition)
            .cloned()
            .ok_or_else(|| SagaError::UnknownDefinition(record.definition.clone()))?;
        if record.state.steps.len() != definition.steps.len() {
            return Err(SagaError::Corrupt {
                saga: saga_id.to_owned(),
                reason: "its steps do not match the definition".into(),
            });
        }
        loop {
            match record.state.next() {
                Next::Done(status) => {
                    if record.state.status != status {
                        record.state.status = status;
                        self.persist(&token, &record, None).await?;
                    }
                    return Ok(Some(status));
                }
                Next::Run(i) => {
                    let step = &definition.steps[i];
                    let mut outcome = Err(("not attempted".to_owned(), false));
                    let mut previous = Duration::ZERO;
                    // Attempts are counted in the stored state: a resume continues the count.
                    while record.state.steps[i].attempts < step.attempts {
                        if late {
                            // Not definite: a step left running by a dead driver may have
                            // happened (never attempted counts as definite below).
                            outcome = Err(("the saga's deadline passed".to_owned(), false));
                            break;
                        }
                        record.state.starting(i);
                        self.persist(&token, &record, None).await?;
                        let call = StepCall {
                            saga_id: saga_id.to_owned(),
                            step: step.name.clone(),
                            idempotency_key: format!("{saga_id}:{}:action", step.name),
                            input: record.input.clone(),
                        };
                        outcome = self
                            .call(saga_id, &token, step.action.clone(), call, step.timeout)
                            .await?;
                        if outcome.is_ok() || record.state.steps[i].attempts >= step.attempts {
                            break;
                        }
                        previous = self
                            .pause(saga_id, &token, record.state.steps[i].attempts, previous)
                            .await?;
                        late = self.late(saga_id).await?;
                    }
                    match outcome {
                        Ok(result) => {
                            record.state.succeeded(i, result);
                            self.persist(
                                &token,
                                &record,
                                Some(("saga.step_done", progress(&record, Some(i)))),
                            )
                            .await?;
                        }
                        Err((reason, definite)) => {
                            // Out of attempts with no answer on record: it may have happened.
                            let definite = definite || record.state.steps[i].attempts == 0;
                            tracing::warn!(saga_id, step = %step.name, %reason, definite, "saga step failed; compensating");
                            record.state.failed(i, reason, definite);
                            self.persist(
                                &token,
                                &record,
                                Some(("saga.step_failed", progress(&record, Some(i)))),
                            )
                            .await?;
                        }
                    }
                }
                Next::Compensate(i) => {
                    let step = &definition.steps[i];
                    let mut outcome = Err(("not attempted".to_owned(), false));
                    let mut previous = Duration::ZERO;
                    while record.state.steps[i].compensation_attempts
                        < definition.compensation_attempts
                    {
                        record.state.compensating(i);
                        self.persist(&token, &record, None).await?;
                        let call = StepCall {
                            saga_id: saga_id.to_owned(),
                            step: step.name.clone(),
                            idempotency_key: format!("{saga_id}:{}:compensation", step.name),
                            input: record.input.clone(),
                        };
                        outcome = self
                            .call(
                                saga_id,
                                &token,
                                step.compensation.clone(),
                                call,
                                step.timeout,
                            )
                            .await?;
                        if outcome.is_ok()
                            || record.state.steps[i].compensation_attempts
                                >= definition.compensation_attempts
                        {
                            break;
                        }
                        previous = self
                            .pause(
                                saga_id,
                                &token,
                                record.state.steps[i].compensation_attempts,
                                previous,
                            )
                            .await?;
                    }
                    match outcome {
                        Ok(_) => {
                            record.state.compensated(i);
                            self.persist(
                                &token,
                                &record,
                                Some(("saga.step_compensated", progress(&record, Some(i)))),
                            )
                            .await?;
                        }
                        Err((reason, _)) => {
                            tracing::error!(saga_id, step = %step.name, %reason, "compensation keeps failing; saga parked");
                            record.state.compensation_failed(i, reason);
                            self.persist(&token, &record, None).await?;
                        }
                    }
                }
            }
        }
    }

    async fn late(&self, saga_id: &str) -> Result<bool, SagaError> {
        let late: Option<bool> = sqlx::query_scalar(&format!(
            "SELECT deadline IS NOT NULL AND deadline < now() FROM {} WHERE saga_id = $1",
            self.table()
        ))
        .bind(saga_id)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(late.unwrap_or(false))
    }

    /// Until `shutdown`: picks up sagas nobody holds (new, or their instance died) and drives
    /// each on its own task.
    pub async fn run(&self, shutdown: impl Future) {
        let _ = palisade_core::shutdown::until(shutdown, self.run_forever()).await;
    }

    async fn run_forever(&self) {
        // At most this many sagas driven here at once; the scan asks for no more than the free
        // slots, so a backlog is shared with the other instances instead of hoarded.
        const SLOTS: usize = 16;
        let slots = Arc::new(tokio::sync::Semaphore::new(SLOTS));
        let mut driving = tokio::task::JoinSet::new();
        let known: Vec<String> = self.inner.definitions.keys().cloned().collect();
        loop {
            while driving.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free > 0 {
                let scan: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(&format!(
                    "SELECT saga_id FROM {} WHERE status IN ('running', 'compensating') \
                     AND definition = ANY($1) AND (lease_until IS NULL OR lease_until < now()) \
                     ORDER BY updated_at LIMIT $2",
                    self.table()
                ))
                .bind(&known)
                .bind(free as i64)
                .fetch_all(&self.inner.pool)
                .await;
                match scan {
                    Ok(ids) => {
                        for id in ids {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let runner = self.clone();
                            driving.spawn(async move {
                                if let Err(error) = runner.drive(&id).await {
                                    tracing::warn!(saga_id = %id, %error, "saga not driven to the end here");
                                }
                                drop(slot);
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "saga runner: scan failed"),
                }
            }
            tokio::time::sleep(self.inner.poll_interval).await;
        }
    }
}

fn progress(record: &SagaRecord, step: Option<usize>) -> Value {
    serde_json::json!({
        "saga_id": record.saga_id,
        "status": record.state.status,
        "step": step.and_then(|i| record.state.steps.get(i)).map(|s| &s.name),
    })
}

fn json_text(state: &SagaState) -> Result<String, SagaError> {
    serde_json::to_string(state).map_err(|e| SagaError::Corrupt {
        saga: String::new(),
        reason: e.to_string(),
    })
}

fn record(saga_id: &str, row: &sqlx::postgres::PgRow) -> Result<SagaRecord, SagaError> {
    let state: Value = row.try_get("state")?;
    Ok(SagaRecord {
        saga_id: saga_id.to_owned(),
        definition: row.try_get("definition")?,
        state: serde_json::from_value(state).map_err(|e| SagaError::Corrupt {
            saga: saga_id.to_owned(),
            reason: e.to_string(),
        })?,
        input: row.try_get("input")?,
    })
}
