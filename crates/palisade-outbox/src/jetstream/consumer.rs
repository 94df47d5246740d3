//! [`JetStreamConsumer`]: a durable pull consumer driving a tower service.

use std::{
    collections::BTreeMap, fmt::Display, future::Future, marker::PhantomData, time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures_util::StreamExt;
use palisade_core::backoff::{self, Jitter};
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::{
    consumer_dead_letters::{ConsumerDeadLetters, Parked},
    delivery::{deliver, until_shutdown},
    error::OutboxError,
    event::Envelope,
    message::Message,
};

/// How a [`JetStreamConsumer`] consumes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// The durable consumer's name (also the inbox's consumer name, by convention).
    pub durable_name: String,
    /// Only subjects matching this filter (empty: the whole stream).
    pub filter_subject: String,
    /// Deliveries after which a failing message is parked as a dead letter (default 5).
    pub max_deliver: u64,
    /// How long JetStream waits for an ack before redelivering (default 30 s). Messages are
    /// handled one at a time, and up to `max_ack_pending` of them wait pulled ahead: keep
    /// `ack_wait` above `max_ack_pending` × the handler's time, or waiting messages are
    /// redelivered (the inbox drops the copies, but their delivery counts grow).
    pub ack_wait: Duration,
    /// Unacknowledged messages in flight to this consumer (default 256; 1 for strict order
    /// even across failures — a failed message is then redelivered before the next one).
    pub max_ack_pending: i64,
    /// First redelivery delay after a failure (default 200 ms), doubling up to 10 s.
    pub redelivery_base: Duration,
}

impl ConsumerConfig {
    /// The defaults, for the durable consumer `durable_name`.
    pub fn new(durable_name: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            durable_name: durable_name.into(),
            filter_subject: String::new(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 256,
            redelivery_base: Duration::from_millis(200),
        }
    }

    /// Only subjects matching `filter`.
    pub fn filter_subject(mut self, filter: impl Into<String>) -> ConsumerConfig {
        self.filter_subject = filter.into();
        self
    }

    /// Parks a message after `n` failed deliveries.
    pub fn max_deliver(mut self, n: u64) -> ConsumerConfig {
        self.max_deliver = n.max(1);
        self
    }

    /// Redelivery after `ack_wait` without an ack.
    pub fn ack_wait(mut self, ack_wait: Duration) -> ConsumerConfig {
        self.ack_wait = ack_wait;
        self
    }

    /// At most `n` unacknowledged messages in flight.
    pub fn max_ack_pending(mut self, n: i64) -> ConsumerConfig {
        self.max_ack_pending = n.max(1);
        self
    }
}

/// Pulls messages from a durable JetStream consumer and calls a
/// `tower::Service<Message<M>>` for each, one at a time, in stream order: acked after the
/// service succeeded (for an [`Inbox`](crate::Inbox), after its commit), nak'ed with a growing
/// delay when it failed, and parked in [`ConsumerDeadLetters`] (then terminated) when it does
/// not decode or failed on its `max_deliver`-th delivery.
///
/// Delivery is at least once: a consumer killed between commit and ack gets the message again,
/// which the inbox answers as a duplicate.
pub struct JetStreamConsumer<M> {
    stream: jetstream::stream::Stream,
    config: ConsumerConfig,
    dead_letters: ConsumerDeadLetters,
    payload: PhantomData<fn() -> M>,
}

impl<M: DeserializeOwned + Send + 'static> JetStreamConsumer<M> {
    /// A consumer of `stream` (created with [`ensure_stream`](super::ensure_stream) or
    /// otherwise), parking messages in `dead_letters`.
    pub fn new(
        stream: jetstream::stream::Stream,
        config: ConsumerConfig,
        dead_letters: ConsumerDeadLetters,
    ) -> JetStreamConsumer<M> {
        JetStreamConsumer {
            stream,
            config,
            dead_letters,
            payload: PhantomData,
        }
    }

    /// Consumes until `shutdown` completes, calling `service` for every message. Broker
    /// disconnections are waited out (the client reconnects; the consumer is durable).
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
        let config = &self.config;
        let mut failures = 0u32;
        loop {
            let consumer = self
                .stream
                .get_or_create_consumer(
                    &config.durable_name,
                    pull::Config {
                        durable_name: Some(config.durable_name.clone()),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::All,
                        ack_wait: config.ack_wait,
                        filter_subject: config.filter_subject.clone(),
                        max_ack_pending: config.max_ack_pending,
                        ..Default::default()
                    },
                )
                .await;
            let consumer = match consumer {
                Ok(consumer) => consumer,
                Err(error) => {
                    tracing::warn!(%error, "consumer: cannot get the durable consumer, retrying");
                    self.pause(&mut failures).await;
                    continue;
                }
            };
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "consumer: cannot pull, retrying");
                    self.pause(&mut failures).await;
                    continue;
                }
            };
            while let Some(next) = messages.next().await {
                match next {
                    Ok(message) => {
                        failures = 0;
                        self.handle(service, message).await;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "consumer: pull interrupted");
                        break;
                    }
                }
            }
            self.pause(&mut failures).await;
        }
    }

    async fn pause(&self, failures: &mut u32) {
        let delay = backoff::delay(
            Jitter::Full,
            Duration::from_millis(100),
            Duration::from_secs(5),
            *failures,
            Duration::ZERO,
            palisade_core::random::unit(),
        );
        *failures = failures.saturating_add(1);
        tokio::time::sleep(delay.max(Duration::from_millis(20))).await;
    }

    async fn handle<S>(&self, service: &mut S, message: jetstream::Message)
    where
        S: Service<Message<M>>,
        S::Error: Display,
    {
        let config = &self.config;
        let (delivered, position) = match message.info() {
            Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence),
            Err(_) => (1, 0),
        };
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| format!("stream-seq-{position}"));
        let envelope: Envelope<M> = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.give_up(
                    &message,
                    &msg_id,
                    delivered,
                    &format!("undecodable: {error}"),
                )
                .await;
                return;
            }
        };
        let mut headers = BTreeMap::new();
        if let Some(map) = &message.headers {
            for (name, values) in map.iter() {
                if let Some(value) = values.last() {
                    headers.insert(name.to_string(), value.as_str().to_owned());
                }
            }
        }
        let delivery = Message {
            envelope,
            headers,
            delivery: delivered,
            transaction: None,
        };
        let outcome = deliver(service, delivery).await;
        match outcome {
            Ok(()) => {
                if let Err(error) = message.ack().await {
                    // Redelivered after ack_wait; the inbox answers it as a duplicate.
                    tracing::warn!(%error, event_id = %msg_id, "consumer: ack failed");
                }
            }
            Err(error) if delivered >= config.max_deliver => {
                self.give_up(&message, &msg_id, delivered, &error.to_string())
                    .await;
            }
            Err(error) => {
                metrics::counter!("palisade_consumer_redeliveries_total", "consumer" => config.durable_name.clone())
                    .increment(1);
                tracing::warn!(%error, event_id = %msg_id, delivered, "consumer: handler failed, redelivering");
                let delay = backoff::delay(
                    Jitter::Equal,
                    config.redelivery_base,
                    Duration::from_secs(10),
                    delivered.saturating_sub(1).min(30) as u32,
                    Duration::ZERO,
                    palisade_core::random::unit(),
                );
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
        }
    }

    async fn give_up(
        &self,
        message: &jetstream::Message,
        msg_id: &str,
        delivered: u64,
        error: &str,
    ) {
        let parked = self
            .dead_letters
            .park(Parked {
                consumer: &self.config.durable_name,
                event_id: msg_id,
                subject: message.subject.as_str(),
                body: &message.payload,
                deliveries: delivered,
                error,
            })
            .await;
        match parked {
            Ok(()) => {
                tracing::error!(event_id = %msg_id, error, "consumer: message dead-lettered");
                let _ = message.ack_with(AckKind::Term).await;
            }
            Err(park_error) => {
                // Not parked: leave it to be redelivered rather than lose it.
                tracing::error!(%park_error, event_id = %msg_id, "consumer: cannot park a dead letter");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
}
