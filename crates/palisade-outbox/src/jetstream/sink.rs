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
            // The stream answered: a 4xx is about this message (too large for the stream, a
            // rule it breaks); a 5xx is the broker's own state (out of storage, a store
            // failure, no cluster quorum) and says nothing about the event.
            let answered = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>())
                .map(|answer| answer.code());
            match answered {
                Some(code) if (400..500).contains(&code) => SinkError::Rejected(text),
                _ => SinkError::Unavailable(text),
            }
        }
        _ => SinkError::Unavailable(text),
    }
}

/// The bytes `headers` take in an `HPUB` (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`).
fn header_size(headers: &HeaderMap) -> usize {
    let fields: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|value| AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + fields + 2
}

impl Sink for JetStreamSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        let max_payload = self.context.client().server_info().max_payload;
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let headers = Self::headers(event);
            let body = event.envelope_json();
            // Over max_payload the server would close the connection (every publish on it
            // failing with it): refuse the event here instead.
            let size = body.len() + header_size(&headers);
            if max_payload > 0 && size > max_payload {
                pending.push(Err(SinkError::Rejected(format!(
                    "the message ({size} bytes with headers) exceeds the server's max_payload \
                     of {max_payload}"
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
        // The acknowledgements are awaited together: each has the context's timeout, so a
        // silent broker costs one timeout per wave, not one per event.
        futures_util::future::join_all(pending.into_iter().map(|sent| async move {
            match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(classify),
                Err(error) => Err(error),
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(code: usize, err_code: u64) -> PublishError {
        let answer: jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": code,
            "err_code": err_code,
            "description": "from the stream",
        }))
        .unwrap();
        PublishError::with_source(PublishErrorKind::Other, answer)
    }

    #[test]
    fn the_brokers_own_trouble_is_never_a_rejection() {
        // 503s: insufficient resources, store failed, cluster not available.
        for (code, err_code) in [(503, 10023), (503, 10077), (503, 10008)] {
            assert!(matches!(
                classify(answered(code, err_code)),
                SinkError::Unavailable(_)
            ));
        }
        // A 4xx is about the message.
        assert!(matches!(
            classify(answered(400, 10054)),
            SinkError::Rejected(_)
        ));
        for kind in [
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::StreamNotFound,
            PublishErrorKind::MaxAckPending,
        ] {
            assert!(matches!(
                classify(PublishError::new(kind)),
                SinkError::Unavailable(_)
            ));
        }
        assert!(matches!(
            classify(PublishError::new(PublishErrorKind::Other)),
            SinkError::Unavailable(_)
        ));
    }

    #[test]
    fn header_size_counts_the_whole_block() {
        let mut headers = HeaderMap::new();
        headers.insert("a", "bc");
        // "NATS/1.0\r\n" + "a: bc\r\n" + "\r\n"
        assert_eq!(header_size(&headers), 10 + 7 + 2);
    }
}
