//! [`Message`]: an event as a consumer's tower service receives it.

use std::collections::BTreeMap;

use crate::{event::Envelope, inbox::InboxTransaction};

/// A delivered event: its envelope (ids, type, sequence, payload `M`), the transport headers
/// (trace context), and which delivery this is. Inside an [`InboxLayer`](crate::InboxLayer)
/// it also carries the PostgreSQL transaction the handler writes in.
#[derive(Debug, Clone)]
pub struct Message<M> {
    /// The envelope: `event_id`, `event_type`, `aggregate_id`, `sequence`, `occurred_at` and
    /// the payload as `data`.
    pub envelope: Envelope<M>,
    /// Transport headers (for instance `traceparent`), as delivered.
    pub headers: BTreeMap<String, String>,
    /// 1 for the first delivery, 2 for the first redelivery, …
    pub delivery: u64,
    pub(crate) transaction: Option<InboxTransaction>,
}

impl<M> Message<M> {
    /// A message with `envelope` and no headers, first delivery.
    pub fn new(envelope: Envelope<M>) -> Message<M> {
        Message {
            envelope,
            headers: BTreeMap::new(),
            delivery: 1,
            transaction: None,
        }
    }

    /// The event id (what inboxes deduplicate on).
    pub fn event_id(&self) -> &str {
        &self.envelope.event_id
    }

    /// The payload.
    pub fn data(&self) -> &M {
        &self.envelope.data
    }

    /// The inbox's transaction: write the handler's effects in it and they commit together
    /// with the record that this event was processed. `None` outside an `InboxLayer`.
    pub fn transaction(&self) -> Option<&InboxTransaction> {
        self.transaction.as_ref()
    }
}
