//! [`JetStreamSink`]: publishes outbox events to JetStream, pipelined, deduplicated by event id.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        context::{PublishError, PublishErrorKind},
    },
};

use super::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE, SEQUENCE};
use crate::{
    event::OutboxEvent,
    sink::{Sink, SinkError},
};

/// Publishes each event on `<subject_prefix>.<event_type>` with headers `Nats-Msg-Id: <event
/// id>` (JetStream drops a duplicate within the stream's window), `Palisade-Aggregate-Id`,
/// `Palisade-Aggregate-Type`, `Palisade-Sequence`, `Palisade-Event-Type` and the event's own
/// headers (trace context), and the JSON envelope as body.
///
/// A wave of events is sent before any acknowledgement is awaited. Errors are classified:
/// no answer, a broken connection, no stream (`no responders`) or too many acks pending are
/// [`SinkError::Unavailable`]; an error the stream answered with, or a message over the
/// server's `max_payload` (which would make the server close the connection), is
/// [`SinkError::Rejected`].
#[derive(Debug, Clone)]
pub struct JetStreamSink {
    context: jetstream::Context,
    subject_prefix: String,
    send_timeout: Duration,
}

impl JetStreamSink {
    /// A sink publishing through `context` (its timeout bounds each acknowledgement) on
    /// subjects under `subject_prefix`.
    pub fn new(context: jetstream::Context, subject_prefix: impl Into<String>) -> JetStreamSink {
        JetStreamSink {
            context,
            subject_prefix: subject_prefix.into(),
            send_timeout: Duration::from_secs(5),
        }
    }

    /// The subject `event` is published on.
    pub fn subject(&self, event: &OutboxEvent) -> String {
        format!("{}.{}", self.subject_prefix, event.event_type)
    }

    fn headers(event: &OutboxEvent) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
        headers.insert(AGGREGATE_ID, event.aggregate_id.as_str());
        headers.insert(AGGREGATE_TYPE, event.aggregate_type.as_str());
        headers.insert(SEQUENCE, event.sequence.to_string());
        headers.insert(EVENT_TYPE, event.event_type.as_str());
        headers
    }
}

fn classify(error: PublishError) -> SinkError {
    let text = error.to_string();
    match error.kind() {
        PublishErrorKind::Other => {
            let answered = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<jetstream::Error>());
            if answered {
                SinkError::Rejected(text)
            } else {
                SinkError::Unavailable(text)
            }
        }
        _ => SinkError::Unavailable(text),
    }
}

impl Sink for JetStreamSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        {
            let max_payload = self.context.client().server_info().max_payload;
            let mut pending = Vec::with_capacity(events.len());
            for event in events {
                let headers = Self::headers(event);
                let body = event.envelope_json();
                let header_bytes: usize = event
                    .headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>()
                    + 256;
                if max_payload > 0 && body.len() + header_bytes > max_payload {
                    pending.push(Err(SinkError::Rejected(format!(
                        "the message ({} bytes) exceeds the server's max_payload of {max_payload}",
                        body.len() + header_bytes
                    ))));
                    continue;
                }
                let sent = tokio::time::timeout(
                    self.send_timeout,
                    self.context
                        .publish_with_headers(self.subject(event), headers, body.into()),
                )
                .await;
                pending.push(match sent {
                    Ok(Ok(ack)) => Ok(ack),
                    Ok(Err(error)) => Err(classify(error)),
                    Err(_) => Err(SinkError::Unavailable("publish not sent in time".into())),
                });
            }
            let mut results = Vec::with_capacity(pending.len());
            for sent in pending {
                results.push(match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(classify),
                    Err(error) => Err(error),
                });
            }
            results
        }
    }
}
