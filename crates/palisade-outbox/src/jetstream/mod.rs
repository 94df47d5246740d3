//! NATS JetStream: the relay's [`JetStreamSink`] (deduplicated by `Nats-Msg-Id`) and the
//! [`JetStreamConsumer`] that drives a tower service from a durable pull consumer.

mod consumer;
mod sink;
mod stream;

pub use consumer::{ConsumerConfig, JetStreamConsumer};
pub use sink::JetStreamSink;
pub use stream::ensure_stream;

/// The header carrying the aggregate id.
pub const AGGREGATE_ID: &str = "Palisade-Aggregate-Id";
/// The header carrying the aggregate type.
pub const AGGREGATE_TYPE: &str = "Palisade-Aggregate-Type";
/// The header carrying the event's sequence in its aggregate.
pub const SEQUENCE: &str = "Palisade-Sequence";
/// The header carrying the event type.
pub const EVENT_TYPE: &str = "Palisade-Event-Type";
/// JetStream's deduplication header; the relay puts the event id in it.
pub const MSG_ID: &str = "Nats-Msg-Id";
