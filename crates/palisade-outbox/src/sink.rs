//! [`Sink`]: where a relay publishes events (a broker), and how it says no.

use std::future::Future;

use crate::event::OutboxEvent;

/// Why a sink did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink could not be reached or did not answer in time (broker down, restarting,
    /// partitioned, no stream for the subject yet). Says nothing about the event: the relay
    /// backs off and tries again, and never dead-letters an event for this.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
    /// The sink answered and refused this event (too large, rejected by the stream's rules).
    /// Counted against the event's attempts; after the relay's `max_attempts` it is parked as a
    /// dead letter.
    #[error("sink rejected the event: {0}")]
    Rejected(String),
}

/// A broker the [`Relay`](crate::Relay) publishes to.
///
/// `publish` receives events of **distinct** aggregates (the relay sends an aggregate's next
/// event only after the previous one was acknowledged), so a sink may send them all before
/// waiting for any acknowledgement. It answers one result per event, in order (a missing result
/// counts as [`SinkError::Unavailable`]); `Ok` means the broker acknowledged the event (a
/// duplicate the broker dropped counts as `Ok`). How durable an acknowledgement is belongs to
/// the broker's configuration: a JetStream stream with one replica syncs to disk on its own
/// schedule (`sync_interval`, 2 min by default), and Redis acknowledges `XADD` before any
/// replica or fsync has it — a crash or failover of the broker can lose acknowledged events.
/// Run JetStream with replicas (or `sync: always`) and Redis with AOF `always` or `WAIT` where
/// that matters.
///
/// Sinks must deduplicate by [`OutboxEvent::id`]: publishing is at least once (a relay that
/// dies between the broker's ack and its own commit publishes the event again).
pub trait Sink: Send + Sync + 'static {
    /// Publishes `events`; one result per event, in order.
    fn publish(
        &self,
        events: &[OutboxEvent],
    ) -> impl Future<Output = Vec<Result<(), SinkError>>> + Send;
}

/// A sink chosen at run time (JetStream or Redis Streams, say): delegates to the side it holds.
impl<L: Sink, R: Sink> Sink for palisade_core::Either<L, R> {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        match self {
            palisade_core::Either::Left(sink) => sink.publish(events).await,
            palisade_core::Either::Right(sink) => sink.publish(events).await,
        }
    }
}
