//! Exactly-once message processing for consumers: [`Deduplicator`].

use std::{fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use palisade_core::BackendError;

use crate::store::{Claim, IdempotencyStore, Owner, RecordKey, renew_while};

const DONE: &[u8] = b"done";
const DEAD: &[u8] = b"dead-lettered";

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed<T> {
    /// This call processed it; here is the handler's result.
    Done(T),
    /// It was processed (or dead-lettered) before: do nothing, acknowledge it.
    Duplicate,
    /// Another worker is processing it right now: do not acknowledge; it will be redelivered
    /// if that worker fails.
    InProgress,
}

/// Why a message was not processed.
#[derive(Debug, thiserror::Error)]
pub enum DedupError<E> {
    /// The handler failed; the claim is released so a redelivery runs it again.
    #[error("handler failed (attempt {attempts})")]
    Failed {
        /// The handler's error.
        #[source]
        error: E,
        /// Failed attempts so far, across all workers.
        attempts: u32,
    },
    /// The handler failed for the last allowed time: the dead-letter hook ran and the message
    /// is marked done, so it is never processed again.
    #[error("handler failed {attempts} times; message dead-lettered")]
    DeadLettered {
        /// The last error.
        #[source]
        error: E,
        /// Failed attempts.
        attempts: u32,
    },
    /// The store could not answer; nothing was run.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

type DeadLetterHook = Arc<dyn Fn(&str, u32, &dyn fmt::Display) + Send + Sync>;

/// Runs each message's handler once, however many times the message is delivered.
///
/// The message id is **claimed** before the handler runs (a lease renewed while it runs), so
/// two workers receiving the same message concurrently never both run it; success marks the
/// id done for the retention period; failure releases the claim for a redelivery and counts
/// the attempt; after `max_attempts` failures the dead-letter hook runs and the message is
/// marked done.
///
/// With a [`DualStore`](crate::DualStore) this is the two-layer design: Redis answers
/// duplicates in one round trip, PostgreSQL's unique key is the durable source of truth (a
/// flushed Redis does not reprocess anything), and a PostgreSQL hit is backfilled into Redis.
///
/// ```
/// use palisade_idempotency::{Deduplicator, MemoryStore, Processed};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dedup = Deduplicator::new(MemoryStore::new()).namespace("orders");
/// let first = dedup.process_once("evt-1", || async { Ok::<_, std::io::Error>(42) }).await;
/// assert_eq!(first.unwrap(), Processed::Done(42));
/// let again = dedup.process_once("evt-1", || async { Ok::<_, std::io::Error>(43) }).await;
/// assert_eq!(again.unwrap(), Processed::Duplicate);
/// # }
/// ```
#[derive(Clone)]
pub struct Deduplicator<S> {
    store: S,
    namespace: String,
    lease: Duration,
    retention: Duration,
    max_attempts: u32,
    dead_letter: Option<DeadLetterHook>,
}

impl<S: fmt::Debug> fmt::Debug for Deduplicator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicator")
            .field("store", &self.store)
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S: IdempotencyStore> Deduplicator<S> {
    /// Defaults: namespace `messages`, 60 s lease, 72 h retention, 5 attempts.
    pub fn new(store: S) -> Self {
        Deduplicator {
            store,
            namespace: "messages".to_owned(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(72 * 3600),
            max_attempts: 5,
            dead_letter: None,
        }
    }

    /// Separates this consumer's ids from others' (a topic, a consumer group).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// How long a claim lasts without renewal (default 60 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How long a processed id is remembered (default 72 h): longer than the broker may
    /// redeliver.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// After `attempts` failed attempts (default 5), `hook(message_id, attempts, error)` runs
    /// and the message is marked done. The last failure retires the record in the same store
    /// step that records it ([`IdempotencyStore::fail`]), so no other worker can claim and run
    /// a message between its last failure and its dead-lettering.
    pub fn dead_letter(
        mut self,
        attempts: u32,
        hook: impl Fn(&str, u32, &dyn fmt::Display) + Send + Sync + 'static,
    ) -> Self {
        self.max_attempts = attempts.max(1);
        self.dead_letter = Some(Arc::new(hook));
        self
    }

    /// Runs `handler` unless `message_id` was processed already (or is being processed).
    pub async fn process_once<T, E, F, Fut>(
        &self,
        message_id: &str,
        handler: F,
    ) -> Result<Processed<T>, DedupError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let key = RecordKey::message(&self.namespace, message_id);
        let owner = Owner::unique();
        match self.store.claim(&key, "", &owner, self.lease).await? {
            Claim::Acquired => {}
            Claim::InFlight { .. } => return Ok(Processed::InProgress),
            Claim::Completed(_) | Claim::Mismatch => return Ok(Processed::Duplicate),
        }
        let outcome = renew_while(&self.store, &key, &owner, self.lease, handler()).await;
        match outcome {
            Ok(value) => {
                self.store
                    .complete(&key, &owner, Bytes::from_static(DONE), self.retention)
                    .await?;
                Ok(Processed::Done(value))
            }
            Err(error) => {
                // Released for another attempt, or retired as dead in the same step: no worker
                // can claim it in between and run it after it was dead-lettered.
                let failed = self
                    .store
                    .fail(
                        &key,
                        &owner,
                        self.max_attempts,
                        Bytes::from_static(DEAD),
                        self.retention,
                    )
                    .await?;
                let attempts = failed.map_or(1, |f| f.attempts);
                if !failed.is_some_and(|f| f.retired) {
                    return Err(DedupError::Failed { error, attempts });
                }
                tracing::error!(
                    target: "palisade::idempotency",
                    message_id,
                    attempts,
                    %error,
                    "message dead-lettered"
                );
                if let Some(hook) = &self.dead_letter {
                    hook(message_id, attempts, &error);
                }
                Err(DedupError::DeadLettered { error, attempts })
            }
        }
    }
}
