//! The event as written ([`NewEvent`]), as claimed by a relay ([`OutboxEvent`]), and as it
//! travels ([`Envelope`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use uuid::Uuid;

use crate::error::OutboxError;

/// The longest aggregate type, aggregate id or event type accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The most headers an event may carry.
pub const MAX_HEADERS: usize = 32;

/// Field names of the envelope, which headers may not take (they become stream-entry fields
/// on Redis Streams).
const RESERVED_FIELDS: [&str; 7] = [
    "event_id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "occurred_at",
    "data",
];

/// An event to write into the outbox with [`Outbox::enqueue`](crate::Outbox::enqueue).
///
/// ```
/// use palisade_outbox::NewEvent;
///
/// let event = NewEvent::new("order", "o-1", "order.placed", serde_json::json!({"amount_cents": 500}))
///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(event.event_type(), "order.placed");
/// assert_eq!(event.id().get_version_num(), 7);
/// ```
#[derive(Debug, Clone)]
pub struct NewEvent {
    id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: serde_json::Value,
    headers: BTreeMap<String, String>,
}

impl NewEvent {
    /// An event of `event_type` (past tense: `order.placed`) about the aggregate
    /// `aggregate_type`/`aggregate_id`, carrying `payload`. Its id is a fresh UUID v7 (time
    /// ordered); its sequence is given by the outbox when it is written.
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: serde_json::Value,
    ) -> NewEvent {
        NewEvent {
            id: Uuid::now_v7(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload,
            headers: BTreeMap::new(),
        }
    }

    /// Uses `id` as the event id instead of a fresh one (when the caller already has one).
    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = id;
        self
    }

    /// Adds a header that travels with the event (trace context: `traceparent`,
    /// `tracestate`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> NewEvent {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The event id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The aggregate type (`order`).
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The event type (`order.placed`).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// The headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        for (what, value) in [
            ("aggregate type", &self.aggregate_type),
            ("aggregate id", &self.aggregate_id),
            ("event type", &self.event_type),
        ] {
            if value.is_empty() || value.len() > MAX_NAME_LEN {
                return Err(OutboxError::InvalidEvent(format!(
                    "the {what} must be 1 to {MAX_NAME_LEN} bytes, not {}",
                    value.len()
                )));
            }
            // Names travel as broker headers: a control character (CR, LF, NUL) could forge
            // another header.
            if value.chars().any(char::is_control) {
                return Err(OutboxError::InvalidEvent(format!(
                    "the {what} contains a control character"
                )));
            }
        }
        // The event type becomes the last tokens of a subject: `orders.order.placed`.
        let subject_safe = self.event_type.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !subject_safe {
            return Err(OutboxError::InvalidEvent(format!(
                "the event type {:?} must be dot-separated tokens of a-z, A-Z, 0-9, _ and -",
                self.event_type
            )));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(OutboxError::InvalidEvent(format!(
                "at most {MAX_HEADERS} headers, not {}",
                self.headers.len()
            )));
        }
        for (name, value) in &self.headers {
            // The broker's own headers (`Nats-Msg-Id`, `Nats-Expected-…`, `Nats-Rollup`),
            // palisade's, and the envelope's field names are not the event's to set: a forged
            // one would drop, stall or rewrite events.
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("nats-")
                || lower.starts_with("palisade-")
                || RESERVED_FIELDS.contains(&lower.as_str())
            {
                return Err(OutboxError::InvalidEvent(format!(
                    "the header name {name:?} is reserved (Nats-*, Palisade-* and the envelope's \
                     field names)"
                )));
            }
            let name_ok = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            let value_ok = value.len() <= 4096 && !value.chars().any(char::is_control);
            if !name_ok || !value_ok {
                return Err(OutboxError::InvalidEvent(format!(
                    "the header {name:?} is not a valid header name and value"
                )));
            }
        }
        Ok(())
    }
}

/// An event claimed from the outbox by a relay, as a [`Sink`](crate::Sink) publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event id (a UUID, as text).
    pub id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The event's place among its aggregate's events: 1, 2, …
    pub sequence: i64,
    /// The event type.
    pub event_type: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// The headers (trace context included).
    pub headers: BTreeMap<String, String>,
    /// When the event was written, RFC 3339 in UTC (`2026-12-01T20:17:57.123456Z`).
    pub occurred_at: String,
    /// How many times a sink has rejected it so far.
    pub attempts: i32,
    /// Its place in the outbox's claim order.
    pub(crate) position: i64,
}

impl OutboxEvent {
    /// The JSON body every sink carries:
    /// `{"event_id", "event_type", "aggregate_type", "aggregate_id", "sequence", "occurred_at", "data"}`.
    pub fn envelope_json(&self) -> String {
        // A JSON string literal of `s` (serializing a `&str` cannot fail).
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        format!(
            "{{\"event_id\":{},\"event_type\":{},\"aggregate_type\":{},\"aggregate_id\":{},\"sequence\":{},\"occurred_at\":{},\"data\":{}}}",
            text(&self.id),
            text(&self.event_type),
            text(&self.aggregate_type),
            text(&self.aggregate_id),
            self.sequence,
            text(&self.occurred_at),
            self.payload
        )
    }
}

/// The JSON body of a published event, decoded by consumers with `M` as the payload type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope<M> {
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The aggregate type (empty when the publisher did not say).
    #[serde(default)]
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The event's place among its aggregate's events.
    pub sequence: i64,
    /// When the event was written (RFC 3339).
    pub occurred_at: String,
    /// The payload.
    pub data: M,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed() -> OutboxEvent {
        OutboxEvent {
            id: "0193a1b2-0000-7000-8000-000000000001".into(),
            aggregate_type: "order".into(),
            aggregate_id: "o-\"1\"\n".into(),
            sequence: 2,
            event_type: "order.paid".into(),
            payload: r#"{"amount_cents": 500}"#.into(),
            headers: BTreeMap::new(),
            occurred_at: "2026-12-01T20:00:00.000000Z".into(),
            attempts: 0,
            position: 9,
        }
    }

    #[test]
    fn the_envelope_is_json_that_decodes_back() {
        let event = claimed();
        let envelope: Envelope<serde_json::Value> =
            serde_json::from_str(&event.envelope_json()).unwrap();
        assert_eq!(envelope.event_id, event.id);
        assert_eq!(envelope.aggregate_id, "o-\"1\"\n");
        assert_eq!(envelope.sequence, 2);
        assert_eq!(envelope.data["amount_cents"], 500);
    }

    #[test]
    fn names_are_bounded() {
        let ok = NewEvent::new("order", "o-1", "order.placed", serde_json::json!({}));
        assert!(ok.validate().is_ok());
        let long = NewEvent::new(
            "order",
            "x".repeat(257),
            "order.placed",
            serde_json::json!({}),
        );
        assert!(matches!(long.validate(), Err(OutboxError::InvalidEvent(_))));
        let empty = NewEvent::new("", "o-1", "order.placed", serde_json::json!({}));
        assert!(empty.validate().is_err());
        let nul = NewEvent::new("order", "o\u{0}1", "order.placed", serde_json::json!({}));
        assert!(nul.validate().is_err());
        let crlf = NewEvent::new(
            "order",
            "o-1\r\nX-Forged: 1",
            "order.placed",
            serde_json::json!({}),
        );
        assert!(crlf.validate().is_err());
        for bad_type in [
            "order placed",
            "orders.>",
            "order.*",
            ".order",
            "order..paid",
            "order.",
        ] {
            let bad = NewEvent::new("order", "o-1", bad_type, serde_json::json!({}));
            assert!(bad.validate().is_err(), "{bad_type}");
        }
        let bad_header = ok.clone().header("trace\nparent", "x");
        assert!(bad_header.validate().is_err());
        let bad_value = ok.clone().header("traceparent", "x\r\ny: z");
        assert!(bad_value.validate().is_err());
        for reserved in [
            "Nats-Msg-Id",
            "nats-expected-last-sequence",
            "Palisade-Sequence",
            "event_id",
            "DATA",
        ] {
            let forged = ok.clone().header(reserved, "x");
            assert!(forged.validate().is_err(), "{reserved}");
        }
        let mut many = ok.clone();
        for i in 0..=MAX_HEADERS {
            many = many.header(format!("x-{i}"), "v");
        }
        assert!(many.validate().is_err());
    }
}
