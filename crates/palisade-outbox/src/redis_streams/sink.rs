//! [`RedisStreamSink`]: appends outbox events to a Redis stream, once per event id.

use std::{sync::LazyLock, time::Duration};

use bytes::Bytes;
use palisade_core::redis::{Arg, OWNERSHIP_TIMEOUT, RedisBackend, RedisClient, RedisScript, Reply};

use super::{dedup_key, slot_tag};
use crate::{
    error::OutboxError,
    event::OutboxEvent,
    sink::{Sink, SinkError},
};

static XADD_ONCE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("xadd_once.lua")));

/// Appends each event to one stream with the fields `event_id`, `event_type`,
/// `aggregate_type`, `aggregate_id`, `sequence`, `occurred_at`, `data` (the payload JSON) and
/// the event's headers (`traceparent`, …) — the JetStream body's fields, as entry fields.
///
/// Redis 7 has no idempotent `XADD`, so a script adds the entry only if the event id's dedup key
/// (in the stream's hash slot, kept for the dedup window) is absent: a relay republishing an
/// event within the window adds nothing. Each event is one script call, sent without waiting
/// for the previous one's reply.
#[derive(Debug, Clone)]
pub struct RedisStreamSink<C> {
    backend: RedisBackend<C>,
    stream: String,
    tag: String,
    window: Duration,
}

impl<C: RedisClient> RedisStreamSink<C> {
    /// A sink appending to the stream `stream` through `client`, deduplicating for 10 minutes,
    /// each call bounded by 500 ms ([`OWNERSHIP_TIMEOUT`]; a call that times out is an unknown
    /// outcome, and the republish it leads to is deduplicated).
    ///
    /// [`OutboxError::Sink`] for a stream name that no other key can share a cluster slot
    /// with (braces without a non-empty hash tag, `a{}b`): the dedup keys must live in the
    /// stream's slot for the script to run on a cluster.
    pub fn new(client: C, stream: impl Into<String>) -> Result<RedisStreamSink<C>, OutboxError> {
        let stream = stream.into();
        let tag = slot_tag(&stream)
            .ok_or_else(|| {
                OutboxError::Sink(format!(
                    "the stream name {stream:?} has braces but no usable hash tag; use `name` or \
                     `prefix:{{tag}}:name`"
                ))
            })?
            .to_owned();
        Ok(RedisStreamSink {
            backend: RedisBackend::new(client, "outbox", OWNERSHIP_TIMEOUT),
            stream,
            tag,
            window: Duration::from_secs(600),
        })
    }

    /// Keeps each event id's dedup key for `window` (longer than a relay can take to
    /// republish after a crash).
    pub fn dedup_window(mut self, window: Duration) -> RedisStreamSink<C> {
        self.window = window.max(Duration::from_millis(1));
        self
    }

    /// Bounds each call by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> RedisStreamSink<C> {
        self.backend = self.backend.with_timeout(timeout);
        self
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    async fn add(&self, event: &OutboxEvent) -> Result<(), SinkError> {
        let keys = [self.stream.clone(), dedup_key(&self.tag, &event.id)];
        let text = |s: &str| Arg::Bytes(Bytes::copy_from_slice(s.as_bytes()));
        let mut args = vec![Arg::Int(
            self.window.as_millis().min(i64::MAX as u128) as i64
        )];
        for (name, value) in [
            ("event_id", event.id.as_str()),
            ("event_type", &event.event_type),
            ("aggregate_type", &event.aggregate_type),
            ("aggregate_id", &event.aggregate_id),
            ("occurred_at", &event.occurred_at),
            ("data", &event.payload),
        ] {
            args.push(text(name));
            args.push(text(value));
        }
        args.push(text("sequence"));
        args.push(Arg::Int(event.sequence));
        for (name, value) in &event.headers {
            args.push(text(name));
            args.push(text(value));
        }
        let reply: Reply = self
            .backend
            .run(&XADD_ONCE, &keys, &args)
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        match reply {
            Reply::Array(parts) if parts.len() == 2 => Ok(()),
            other => Err(SinkError::Unavailable(format!(
                "unexpected reply from the dedup script: {other:?}"
            ))),
        }
    }
}

impl<C: RedisClient> Sink for RedisStreamSink<C> {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        futures_util::future::join_all(events.iter().map(|event| self.add(event))).await
    }
}
