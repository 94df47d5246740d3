//! [`Repository`]: load an aggregate (snapshot + tail, upcast), decide a command, append with
//! the expected version, retry on conflict.

use std::{marker::PhantomData, time::Duration};

use palisade_core::backoff::{self, Jitter};
use palisade_outbox::{NewEvent, Outbox};
use serde_json::Value;

use super::store::{EventStore, NewStored, Snapshot};
use crate::{
    aggregate::{Aggregate, DomainEvent, Loaded},
    error::{CommandError, StoreError},
    recorded::RecordedEvent,
    upcast::Upcasters,
};

/// What a command did.
#[derive(Debug, Clone)]
pub struct Committed<A: Aggregate> {
    /// The stream's version after it.
    pub version: u64,
    /// The state after it.
    pub state: A,
    /// The events it appended (none when the aggregate decided nothing changes, or for a
    /// duplicate).
    pub events: Vec<A::Event>,
    /// The command id had been carried out before: `version` and `state` are what that first
    /// execution left (replayed), and nothing was appended now.
    pub duplicate: bool,
}

/// Loads and changes aggregates of type `A` in an [`EventStore`].
///
/// [`execute`](Self::execute): load (latest snapshot of the right schema version, then the
/// events after it, each upcast to today's schema), let the aggregate decide, append at the
/// loaded version. A concurrent append makes that a conflict: with an explicit expected
/// version the caller hears [`CommandError::Conflict`]; without one the command is decided
/// again on the fresh state, up to `retries` times with jittered backoff. Every
/// `snapshot_every` events (default 100) a snapshot is written in the append's transaction.
/// With [`publish_to`](Self::publish_to), each appended event is also enqueued in the outbox
/// in that same transaction — published exactly when it commits.
pub struct Repository<A> {
    store: EventStore,
    upcasters: Upcasters,
    snapshot_every: u64,
    retries: u32,
    outbox: Option<Outbox>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            snapshot_every: self.snapshot_every,
            retries: self.retries,
            outbox: self.outbox.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("store", &self.store)
            .field("snapshot_every", &self.snapshot_every)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store`: snapshots every 100 events, 32 retries on conflict.
    pub fn new(store: EventStore) -> Repository<A> {
        Repository {
            store,
            upcasters: Upcasters::new(),
            snapshot_every: 100,
            retries: 32,
            outbox: None,
            aggregate: PhantomData,
        }
    }

    /// Upcasts stored events with `upcasters`.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Repository<A> {
        self.upcasters = upcasters;
        self
    }

    /// A snapshot every `n` events (0: never).
    pub fn snapshot_every(mut self, n: u64) -> Repository<A> {
        self.snapshot_every = n;
        self
    }

    /// Retries a command at most `n` times when a concurrent append wins.
    pub fn retries(mut self, n: u32) -> Repository<A> {
        self.retries = n;
        self
    }

    /// Enqueues every appended event in `outbox`, in the append's transaction.
    pub fn publish_to(mut self, outbox: Outbox) -> Repository<A> {
        self.outbox = Some(outbox);
        self
    }

    /// The store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Decodes a stored event into today's `A::Event`.
    pub fn decode(&self, event: &RecordedEvent) -> Result<A::Event, StoreError> {
        let what = || format!("event {} of stream {}", event.version, event.stream_id);
        let payload = self
            .upcasters
            .upcast(
                &event.event_type,
                event.schema_version,
                <A::Event as DomainEvent>::SCHEMA_VERSION,
                event.payload.clone(),
            )
            .map_err(|e| StoreError::Decode {
                what: what(),
                reason: e.to_string(),
            })?;
        serde_json::from_value(payload).map_err(|e| StoreError::Decode {
            what: what(),
            reason: e.to_string(),
        })
    }

    /// The aggregate `stream_id` now: its latest usable snapshot, then the events after it. A
    /// snapshot of another schema version, or one that does not decode, is ignored (full
    /// replay).
    pub async fn load(&self, stream_id: &str) -> Result<Loaded<A>, StoreError> {
        let mut loaded = Loaded::<A>::default();
        if let Some(snapshot) = self.store.load_snapshot(stream_id).await? {
            if snapshot.schema_version == A::SNAPSHOT_VERSION {
                match serde_json::from_value::<A>(snapshot.state) {
                    Ok(state) => {
                        loaded = Loaded {
                            state,
                            version: snapshot.version,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(stream_id, %error, "snapshot does not decode; replaying")
                    }
                }
            }
        }
        for event in self.store.read_stream(stream_id, loaded.version).await? {
            if event.version != loaded.version + 1 {
                return Err(StoreError::Decode {
                    what: format!("stream {stream_id}"),
                    reason: format!("event version {} follows {}", event.version, loaded.version),
                });
            }
            let decoded = self.decode(&event)?;
            loaded.apply_all(std::slice::from_ref(&decoded));
        }
        Ok(loaded)
    }

    /// Carries out `command` on `stream_id`; `expected`, when given, is the version the caller
    /// saw (a stale one is [`CommandError::Conflict`], not retried).
    ///
    /// A commit whose reply is lost (the connection drops after PostgreSQL committed) is an
    /// unknown outcome: retrying the call may carry the command out twice. Give commands an id
    /// and use [`execute_once`](Self::execute_once) where that matters.
    pub async fn execute(
        &self,
        stream_id: &str,
        command: A::Command,
        expected: Option<u64>,
    ) -> Result<Committed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        self.execute_command(stream_id, None, command, expected)
            .await
    }

    /// [`execute`](Self::execute), at most once per `command_id` for `stream_id`: the id is
    /// recorded in the append's transaction, so a retried command (a client's retry, a
    /// redelivered message) appends nothing and answers the version and state its first
    /// execution produced, with [`Committed::duplicate`] set. Commands that append nothing
    /// (refused, or no change) are not recorded.
    pub async fn execute_once(
        &self,
        stream_id: &str,
        command_id: &str,
        command: A::Command,
        expected: Option<u64>,
    ) -> Result<Committed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        self.execute_command(stream_id, Some(command_id), command, expected)
            .await
    }

    /// The state `stream_id` had at `version` (the latest snapshot at or below it, then the
    /// events up to it).
    pub async fn load_at(&self, stream_id: &str, version: u64) -> Result<Loaded<A>, StoreError> {
        let mut loaded = Loaded::<A>::default();
        if let Some(snapshot) = self.store.load_snapshot(stream_id).await? {
            if snapshot.schema_version == A::SNAPSHOT_VERSION && snapshot.version <= version {
                if let Ok(state) = serde_json::from_value::<A>(snapshot.state) {
                    loaded = Loaded {
                        state,
                        version: snapshot.version,
                    };
                }
            }
        }
        for event in self.store.read_stream(stream_id, loaded.version).await? {
            if event.version > version {
                break;
            }
            let decoded = self.decode(&event)?;
            loaded.apply_all(std::slice::from_ref(&decoded));
        }
        Ok(loaded)
    }

    async fn duplicate(
        &self,
        stream_id: &str,
        version: u64,
    ) -> Result<Committed<A>, CommandError<A::Error>> {
        let loaded = self.load_at(stream_id, version).await?;
        Ok(Committed {
            version: loaded.version,
            state: loaded.state,
            events: Vec::new(),
            duplicate: true,
        })
    }

    async fn execute_command(
        &self,
        stream_id: &str,
        command_id: Option<&str>,
        command: A::Command,
        expected: Option<u64>,
    ) -> Result<Committed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let mut previous = Duration::ZERO;
        for attempt in 0..=self.retries {
            if let Some(id) = command_id {
                if let Some(version) = self.store.command_version(stream_id, id).await? {
                    return self.duplicate(stream_id, version).await;
                }
            }
            let loaded = self.load(stream_id).await?;
            if let Some(expected) = expected {
                if expected != loaded.version {
                    return Err(CommandError::Conflict {
                        expected,
                        actual: loaded.version,
                    });
                }
            }
            let events = loaded
                .state
                .handle(command.clone())
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Committed {
                    version: loaded.version,
                    state: loaded.state,
                    events,
                    duplicate: false,
                });
            }
            match self
                .append(stream_id, command_id, loaded.clone(), &events)
                .await
            {
                Ok(committed) => return Ok(committed),
                Err(StoreError::Conflict {
                    expected: e,
                    actual,
                }) => {
                    if expected.is_some() {
                        return Err(CommandError::Conflict {
                            expected: e,
                            actual,
                        });
                    }
                    metrics::counter!("palisade_eventstore_conflicts_total", "aggregate" => A::TYPE)
                        .increment(1);
                    let wait = backoff::delay(
                        Jitter::Decorrelated,
                        Duration::from_millis(2),
                        Duration::from_millis(100),
                        attempt,
                        previous,
                        palisade_core::random::unit(),
                    );
                    previous = wait;
                    tokio::time::sleep(wait).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Contended {
            attempts: self.retries + 1,
        })
    }

    async fn append(
        &self,
        stream_id: &str,
        command_id: Option<&str>,
        mut loaded: Loaded<A>,
        events: &[A::Event],
    ) -> Result<Committed<A>, StoreError> {
        let stored = events
            .iter()
            .map(|event| {
                Ok(NewStored {
                    event_type: event.event_type().to_owned(),
                    schema_version: <A::Event as DomainEvent>::SCHEMA_VERSION,
                    payload: serde_json::to_value(event).map_err(|e| StoreError::Decode {
                        what: "a new event".into(),
                        reason: e.to_string(),
                    })?,
                    metadata: Value::Null,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let before = loaded.version;
        let mut tx = self.store.pool().begin().await?;
        let version = self
            .store
            .append(&mut tx, stream_id, A::TYPE, before, &stored)
            .await?;
        if let Some(id) = command_id {
            if !self
                .store
                .record_command(&mut tx, stream_id, id, version)
                .await?
            {
                // Recorded meanwhile by a concurrent execution of the same command (it
                // appended too, or this append would not have got its version): treat as a
                // conflict; the retry finds the record and answers the duplicate.
                return Err(StoreError::Conflict {
                    expected: loaded.version,
                    actual: version,
                });
            }
        }
        loaded.apply_all(events);
        if self.snapshot_every > 0 && version / self.snapshot_every > before / self.snapshot_every {
            let state = serde_json::to_value(&loaded.state).map_err(|e| StoreError::Decode {
                what: "a snapshot".into(),
                reason: e.to_string(),
            })?;
            let snapshot = Snapshot {
                version,
                schema_version: A::SNAPSHOT_VERSION,
                state,
            };
            self.store
                .save_snapshot(&mut tx, stream_id, &snapshot)
                .await?;
        }
        if let Some(outbox) = &self.outbox {
            for (event, stored) in events.iter().zip(&stored) {
                outbox
                    .enqueue(
                        &mut tx,
                        NewEvent::new(
                            A::TYPE,
                            stream_id,
                            event.event_type(),
                            stored.payload.clone(),
                        ),
                    )
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Committed {
            version,
            state: loaded.state,
            events: events.to_vec(),
            duplicate: false,
        })
    }
}
