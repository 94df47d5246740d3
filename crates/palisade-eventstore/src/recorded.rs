//! [`RecordedEvent`] and [`Position`]: an event as stored, and where it sits in the global
//! order.

use serde_json::Value;

/// A place in the global order of all streams: the appending transaction's id, then the
/// event's position number. Readers of "everything after a position" see events in this
/// order, and never an event that commits later behind one they have already seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The PostgreSQL transaction (`xid8`) that appended the event.
    pub transaction_id: u64,
    /// The event's global position number (unique, increasing within a transaction; across
    /// transactions it is *allocation* order, not commit order).
    pub global_position: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position {
        transaction_id: 0,
        global_position: 0,
    };
}

/// An event as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The stream (aggregate instance) it belongs to.
    pub stream_id: String,
    /// Its version in the stream: 1, 2, …
    pub version: u64,
    /// Its place in the global order.
    pub position: Position,
    /// The event type.
    pub event_type: String,
    /// The schema version it was written at.
    pub schema_version: u32,
    /// The payload as written (upcast on decode).
    pub payload: Value,
    /// Metadata (trace context, causation, the command's idempotency key…).
    pub metadata: Value,
    /// When it was recorded, RFC 3339 in UTC.
    pub recorded_at: String,
}
