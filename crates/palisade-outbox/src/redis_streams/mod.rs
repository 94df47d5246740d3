//! Redis Streams: the relay's [`RedisStreamSink`] (one entry per event id, by a script) and the
//! [`RedisStreamConsumer`] that drives a tower service from a consumer group.

mod consumer;
mod entry;
mod sink;

pub use consumer::{RedisStreamConsumer, StreamConsumerConfig};
pub use entry::StreamEntry;
pub use sink::RedisStreamSink;

/// The hash tag that puts a key in `stream`'s cluster slot: the stream's own tag (Redis'
/// rule: from the first `{` to the next `}`, when not empty), or the whole name when it has no
/// braces at all. `None` for a name hashed whole that contains braces (`a{}b`, `x}y`): no other
/// key can be placed in its slot, so it cannot be used.
pub(crate) fn slot_tag(stream: &str) -> Option<&str> {
    if let Some(open) = stream.find('{') {
        let rest = &stream[open + 1..];
        return match rest.find('}') {
            Some(len) if len > 0 => Some(&rest[..len]),
            _ => None,
        };
    }
    (!stream.contains('}') && !stream.is_empty()).then_some(stream)
}

/// The key holding the entry id of `event_id`, in the slot of the stream whose tag is `tag`.
pub(crate) fn dedup_key(tag: &str, event_id: &str) -> String {
    format!("{{{tag}}}:palisade-dedup:{event_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_key_shares_the_streams_slot() {
        assert_eq!(slot_tag("ORDERS"), Some("ORDERS"));
        assert_eq!(dedup_key("ORDERS", "e1"), "{ORDERS}:palisade-dedup:e1");
        assert_eq!(slot_tag("app:{orders}:s"), Some("orders"));
        assert_eq!(slot_tag("a{b}c{d}"), Some("b"));
        for unusable in ["a{}b", "x}y", "a{b", ""] {
            assert_eq!(slot_tag(unusable), None, "{unusable}");
        }
    }
}
