//! The projector: consumes the order events and keeps the customers' read model, each event
//! counted once (the inbox records it in the same transaction as the counts).

use std::{
    future::Future,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::BoxFuture;
use palisade::outbox::{
    ConsumerDeadLetters, InboxLayer, Message, Schema,
    jetstream::{ConsumerConfig, JetStreamConsumer, ensure_stream},
    redis_streams::{RedisStreamConsumer, StreamConsumerConfig},
};
use serde_json::Value;
use sqlx::PgPool;
use tower::{Layer, Service};

use crate::Broker;

/// The consumer (durable JetStream consumer, or Redis consumer group) and inbox name.
pub const CONSUMER: &str = "orders-projector";

/// Applies one event to the customers table, in the inbox's transaction.
#[derive(Clone)]
pub struct Project {
    upsert: String,
}

impl Project {
    pub fn new(schema: &Schema) -> Project {
        Project {
            upsert: format!(
                "INSERT INTO {schema}.customers AS c \
                    (customer_id, orders_placed, orders_paid, orders_cancelled, total_paid_cents) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (customer_id) DO UPDATE SET \
                    orders_placed = c.orders_placed + EXCLUDED.orders_placed, \
                    orders_paid = c.orders_paid + EXCLUDED.orders_paid, \
                    orders_cancelled = c.orders_cancelled + EXCLUDED.orders_cancelled, \
                    total_paid_cents = c.total_paid_cents + EXCLUDED.total_paid_cents"
            ),
        }
    }
}

impl Service<Message<Value>> for Project {
    type Response = ();
    type Error = String;
    type Future = BoxFuture<'static, Result<(), String>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: Message<Value>) -> Self::Future {
        let upsert = self.upsert.clone();
        Box::pin(async move {
            let data = message.data();
            let amount = data["amount_cents"].as_i64().unwrap_or(0);
            // Other events share the stream (the checkout saga's progress): not ours to count.
            let (placed, paid, cancelled, total) = match message.envelope.event_type.as_str() {
                "order.placed" => (1, 0, 0, 0),
                "order.paid" => (0, 1, 0, amount),
                "order.cancelled" => (0, 0, 1, 0),
                _ => return Ok(()),
            };
            let Some(customer) = data["customer_id"].as_str() else {
                return Err("the event has no customer_id".to_owned());
            };
            let span = tracing::info_span!(
                "project",
                event_id = %message.event_id(),
                traceparent = message.headers.get("traceparent").map(String::as_str).unwrap_or(""),
            );
            let _entered = span.enter();
            let tx = message
                .transaction()
                .ok_or("the projector runs inside the inbox")?;
            let mut db = tx.lock().await.map_err(|e| e.to_string())?;
            sqlx::query(&upsert)
                .bind(customer)
                .bind(placed)
                .bind(paid)
                .bind(cancelled)
                .bind(total)
                .execute(&mut *db)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

/// Consumes until `shutdown`: JetStream's durable consumer, or a Redis consumer group.
pub async fn run(
    pool: PgPool,
    schema: Schema,
    broker: Broker,
    stream: String,
    subject: String,
    shutdown: impl Future<Output = ()> + Send,
) {
    let service =
        InboxLayer::new(pool.clone(), schema.clone(), CONSUMER).layer(Project::new(&schema));
    let dead_letters = ConsumerDeadLetters::new(pool, &schema);
    let outcome = match broker {
        Broker::Nats(context) => {
            let mut shutdown = std::pin::pin!(shutdown);
            let js_stream = loop {
                let made = ensure_stream(&context, &stream, &subject, crate::DUPLICATE_WINDOW);
                tokio::select! {
                    made = made => match made {
                        Ok(js_stream) => break js_stream,
                        Err(error) => {
                            tracing::warn!(%error, "projector: stream not ready, retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    _ = &mut shutdown => return,
                }
            };
            let config = ConsumerConfig::new(CONSUMER)
                .filter_subject(format!("{subject}.>"))
                .ack_wait(Duration::from_secs(5))
                .max_deliver(5);
            let consumer: JetStreamConsumer<Value> =
                JetStreamConsumer::new(js_stream, config, dead_letters);
            consumer.run(service, shutdown).await
        }
        Broker::Redis(client) => {
            let member = format!("{}-{}", hostname(), std::process::id());
            let config = StreamConsumerConfig::new(CONSUMER, member)
                .claim_idle(Duration::from_secs(5))
                .max_deliver(5);
            let consumer: RedisStreamConsumer<Value, _> =
                RedisStreamConsumer::new(client, stream, config, dead_letters);
            consumer.run(service, shutdown).await
        }
    };
    if let Err(error) = outcome {
        tracing::error!(%error, "projector stopped");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "orders".to_owned())
}
