//! Redis Streams: the relay's [`RedisStreamSink`] (one entry per event id, by a script) and the
//! [`RedisStreamConsumer`] that drives a tower service from a consumer group.

mod consumer;
mod entry;
mod sink;

pub use consumer::{RedisStreamConsumer, StreamConsumerConfig};
pub use entry::StreamEntry;
pub use sink::RedisStreamSink;

/// The key holding the entry id of `event_id` in `stream`, in the stream's hash slot: the
/// stream's hash tag when it has one, else its whole name, in braces.
pub(crate) fn dedup_key(stream: &str, event_id: &str) -> String {
    format!("{{{}}}:palisade-dedup:{event_id}", hash_tag(stream))
}

fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_key_shares_the_streams_slot() {
        assert_eq!(dedup_key("ORDERS", "e1"), "{ORDERS}:palisade-dedup:e1");
        assert_eq!(
            dedup_key("app:{orders}:s", "e1"),
            "{orders}:palisade-dedup:e1"
        );
        assert_eq!(dedup_key("a{}b", "e1"), "{a{}b}:palisade-dedup:e1");
    }
}
