//! [`RedisStreamConsumer`]: a consumer group member driving a tower service.

use std::{
    collections::BTreeMap, fmt::Display, future::Future, marker::PhantomData, sync::LazyLock,
    time::Duration,
};

use bytes::Bytes;
use palisade_core::redis::{Arg, OWNERSHIP_TIMEOUT, RedisBackend, RedisClient, RedisScript, Reply};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::entry::StreamEntry;
use crate::{
    consumer_dead_letters::{ConsumerDeadLetters, Parked},
    delivery::{deliver, until_shutdown},
    error::OutboxError,
    event::Envelope,
    message::Message,
};

static READ: LazyLock<RedisScript> = LazyLock::new(|| RedisScript::new(include_str!("read.lua")));

/// The entry fields that are the envelope, not headers.
const ENVELOPE_FIELDS: [&str; 7] = [
    "event_id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "occurred_at",
    "data",
];

/// How a [`RedisStreamConsumer`] consumes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamConsumerConfig {
    /// The consumer group (also the inbox's consumer name, by convention).
    pub group: String,
    /// This member's name within the group (one per process: a host name or instance id).
    pub consumer: String,
    /// Entries read per round trip (default 64).
    pub batch: u32,
    /// Deliveries after which a failing entry is parked as a dead letter (default 5).
    pub max_deliver: u64,
    /// How long an entry stays pending (delivered, not acknowledged) before any member may
    /// claim it again with `XAUTOCLAIM` (default 30 s): the redelivery delay after a failure,
    /// and the time to take over a dead member's entries. Keep it above `batch` × the
    /// handler's time: an entry of a batch still waiting its turn past `claim_idle` is claimed
    /// by another member too (the inbox drops the second processing, not the reordering).
    pub claim_idle: Duration,
    /// Pause between reads that found nothing (default 50 ms). Reads do not `BLOCK`, so the
    /// consumer can share a multiplexed connection.
    pub poll_interval: Duration,
}

impl StreamConsumerConfig {
    /// The defaults, for member `consumer` of `group`.
    pub fn new(group: impl Into<String>, consumer: impl Into<String>) -> StreamConsumerConfig {
        StreamConsumerConfig {
            group: group.into(),
            consumer: consumer.into(),
            batch: 64,
            max_deliver: 5,
            claim_idle: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
        }
    }

    /// Parks an entry after `n` failed deliveries.
    pub fn max_deliver(mut self, n: u64) -> StreamConsumerConfig {
        self.max_deliver = n.max(1);
        self
    }

    /// Entries pending longer than `idle` are claimed again.
    pub fn claim_idle(mut self, idle: Duration) -> StreamConsumerConfig {
        self.claim_idle = idle;
        self
    }
}

/// Reads a Redis stream as a member of a consumer group and calls a
/// `tower::Service<Message<M>>` for each entry, one at a time: `XACK` after the service
/// succeeded (for an [`Inbox`](crate::Inbox), after its commit); a failed entry stays pending
/// and is claimed again (`XAUTOCLAIM`) once idle for `claim_idle`; an entry that does not
/// decode, or failed on its `max_deliver`-th delivery, is parked in [`ConsumerDeadLetters`]
/// and acknowledged.
pub struct RedisStreamConsumer<M, C> {
    backend: RedisBackend<C>,
    stream: String,
    config: StreamConsumerConfig,
    dead_letters: ConsumerDeadLetters,
    payload: PhantomData<fn() -> M>,
}

impl<M: DeserializeOwned + Send + 'static, C: RedisClient> RedisStreamConsumer<M, C> {
    /// A consumer of `stream` through `client`, parking entries in `dead_letters`.
    pub fn new(
        client: C,
        stream: impl Into<String>,
        config: StreamConsumerConfig,
        dead_letters: ConsumerDeadLetters,
    ) -> RedisStreamConsumer<M, C> {
        RedisStreamConsumer {
            backend: RedisBackend::new(client, "outbox", OWNERSHIP_TIMEOUT),
            stream: stream.into(),
            config,
            dead_letters,
            payload: PhantomData,
        }
    }

    /// Consumes until `shutdown` completes. Redis failures are logged and waited out.
    pub async fn run<S>(&self, mut service: S, shutdown: impl Future) -> Result<(), OutboxError>
    where
        S: Service<Message<M>>,
        S::Error: Display,
    {
        until_shutdown(shutdown, self.consume(&mut service)).await
    }

    async fn consume<S>(&self, service: &mut S) -> Result<(), OutboxError>
    where
        S: Service<Message<M>>,
        S::Error: Display,
    {
        loop {
            let batch = match self.read().await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "stream consumer: read failed, retrying");
                    tokio::time::sleep(self.config.poll_interval.max(Duration::from_millis(100)))
                        .await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            for (entry, deliveries) in batch {
                self.handle(service, entry, deliveries).await;
            }
        }
    }

    /// Reclaimed entries (with their delivery counts) then new ones (delivery 1).
    async fn read(&self) -> Result<Vec<(StreamEntry, u64)>, OutboxError> {
        let text = |s: &str| Arg::Bytes(Bytes::copy_from_slice(s.as_bytes()));
        let reply: Reply = self
            .backend
            .run(
                &READ,
                std::slice::from_ref(&self.stream),
                &[
                    text(&self.config.group),
                    text(&self.config.consumer),
                    Arg::Int(i64::from(self.config.batch.max(1))),
                    Arg::Int(self.config.claim_idle.as_millis().min(i64::MAX as u128) as i64),
                ],
            )
            .await
            .map_err(|e| OutboxError::Sink(e.to_string()))?;
        let Reply::Array(mut parts) = reply else {
            return Err(OutboxError::Sink(
                "unexpected reply from the read script".into(),
            ));
        };
        if parts.len() != 3 {
            return Err(OutboxError::Sink(
                "unexpected reply from the read script".into(),
            ));
        }
        let fresh = StreamEntry::from_read(parts.pop().unwrap_or(Reply::Nil));
        let deliveries: Vec<u64> = match parts.pop() {
            Some(Reply::Array(counts)) => counts
                .iter()
                .map(|c| c.as_int().unwrap_or(1).max(1) as u64)
                .collect(),
            _ => Vec::new(),
        };
        let reclaimed = match parts.pop() {
            Some(Reply::Array(entries)) => entries
                .into_iter()
                .filter_map(StreamEntry::from_reply)
                .collect(),
            _ => Vec::new(),
        };
        let mut batch: Vec<(StreamEntry, u64)> = reclaimed
            .into_iter()
            .zip(deliveries.into_iter().chain(std::iter::repeat(1)))
            .collect();
        batch.extend(fresh.into_iter().map(|e| (e, 1)));
        Ok(batch)
    }

    async fn handle<S>(&self, service: &mut S, entry: StreamEntry, deliveries: u64)
    where
        S: Service<Message<M>>,
        S::Error: Display,
    {
        let event_id = entry
            .text("event_id")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("entry-{}", entry.id));
        let message = match decode::<M>(&entry, deliveries) {
            Ok(message) => message,
            Err(why) => {
                self.give_up(&entry, &event_id, deliveries, &why).await;
                return;
            }
        };
        let outcome = deliver(service, message).await;
        match outcome {
            Ok(()) => self.ack(&entry.id).await,
            Err(error) if deliveries >= self.config.max_deliver => {
                self.give_up(&entry, &event_id, deliveries, &error.to_string())
                    .await;
            }
            Err(error) => {
                // Left pending: claimed again once idle for claim_idle.
                metrics::counter!("palisade_consumer_redeliveries_total", "consumer" => self.config.group.clone())
                    .increment(1);
                tracing::warn!(%error, event_id, deliveries, "stream consumer: handler failed");
            }
        }
    }

    async fn ack(&self, entry_id: &str) {
        let text = |s: &str| Arg::Bytes(Bytes::copy_from_slice(s.as_bytes()));
        let acked: Result<i64, _> = self
            .backend
            .command(
                "XACK",
                &[text(&self.stream), text(&self.config.group), text(entry_id)],
            )
            .await;
        if let Err(error) = acked {
            // Claimed again later; the inbox answers it as a duplicate.
            tracing::warn!(%error, entry_id, "stream consumer: XACK failed");
        }
    }

    async fn give_up(&self, entry: &StreamEntry, event_id: &str, deliveries: u64, error: &str) {
        let body = serde_json::to_vec(
            &entry
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap_or_default();
        let parked = self
            .dead_letters
            .park(Parked {
                consumer: &self.config.group,
                event_id,
                subject: &self.stream,
                body: &body,
                deliveries,
                error,
            })
            .await;
        match parked {
            Ok(()) => {
                tracing::error!(event_id, error, "stream consumer: entry dead-lettered");
                self.ack(&entry.id).await;
            }
            Err(park_error) => {
                tracing::error!(%park_error, event_id, "stream consumer: cannot park a dead letter");
            }
        }
    }
}

/// The message of an entry written by [`RedisStreamSink`](super::RedisStreamSink).
fn decode<M: DeserializeOwned>(entry: &StreamEntry, deliveries: u64) -> Result<Message<M>, String> {
    let field = |name: &str| {
        entry
            .text(name)
            .ok_or_else(|| format!("undecodable: no UTF-8 field {name:?}"))
    };
    let data = serde_json::from_str(field("data")?).map_err(|e| format!("undecodable: {e}"))?;
    let envelope = Envelope {
        event_id: field("event_id")?.to_owned(),
        event_type: field("event_type")?.to_owned(),
        aggregate_type: entry.text("aggregate_type").unwrap_or_default().to_owned(),
        aggregate_id: field("aggregate_id")?.to_owned(),
        sequence: field("sequence")?
            .parse()
            .map_err(|_| "undecodable: sequence is not a number".to_owned())?,
        occurred_at: entry.text("occurred_at").unwrap_or_default().to_owned(),
        data,
    };
    let headers = entry
        .fields
        .iter()
        .filter(|(name, _)| !ENVELOPE_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    Ok(Message {
        envelope,
        headers,
        delivery: deliveries,
        transaction: None,
    })
}
