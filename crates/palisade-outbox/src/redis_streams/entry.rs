//! [`StreamEntry`]: one Redis Streams entry, decoded from `XREADGROUP` / `XAUTOCLAIM` replies.

use std::collections::BTreeMap;

use bytes::Bytes;
use palisade_core::redis::Reply;

/// A stream entry: its id and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry id (`1733083077000-0`).
    pub id: String,
    /// The fields, by name (a repeated field keeps its last value).
    pub fields: BTreeMap<String, Bytes>,
}

impl StreamEntry {
    /// A field as UTF-8 text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// `[id, [field, value, …]]`; `None` for anything else (a deleted entry's `nil` fields).
    pub(crate) fn from_reply(reply: Reply) -> Option<StreamEntry> {
        let Reply::Array(mut parts) = reply else {
            return None;
        };
        if parts.len() != 2 {
            return None;
        }
        let fields = parts.pop()?;
        let id = text_of(parts.pop()?)?;
        let Reply::Array(pairs) = fields else {
            return None;
        };
        let mut map = BTreeMap::new();
        let mut pairs = pairs.into_iter();
        while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
            let (Reply::Bytes(name), Reply::Bytes(value)) = (name, value) else {
                continue;
            };
            map.insert(String::from_utf8_lossy(&name).into_owned(), value);
        }
        Some(StreamEntry { id, fields: map })
    }

    /// The entries of an `XREADGROUP` reply for one stream: `[[stream, [entry…]]]` or nil.
    pub(crate) fn from_read(reply: Reply) -> Vec<StreamEntry> {
        let Reply::Array(streams) = reply else {
            return Vec::new();
        };
        streams
            .into_iter()
            .filter_map(|stream| match stream {
                Reply::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .flat_map(entries_of)
            .collect()
    }
}

fn entries_of(reply: Reply) -> Vec<StreamEntry> {
    match reply {
        Reply::Array(entries) => entries
            .into_iter()
            .filter_map(StreamEntry::from_reply)
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn text_of(reply: Reply) -> Option<String> {
    match reply {
        Reply::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Reply::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::Bytes(Bytes::from(s.to_owned()))
    }

    #[test]
    fn read_and_autoclaim_replies_decode() {
        let entry = Reply::Array(vec![
            b("1-0"),
            Reply::Array(vec![b("event_id"), b("e1"), b("data"), b("{}")]),
        ]);
        let read = Reply::Array(vec![Reply::Array(vec![
            b("ORDERS"),
            Reply::Array(vec![entry.clone()]),
        ])]);
        let entries = StreamEntry::from_read(read);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].text("event_id"), Some("e1"));
        assert!(StreamEntry::from_read(Reply::Nil).is_empty());
        // Malformed shapes decode to nothing rather than panic.
        assert!(StreamEntry::from_read(b("x")).is_empty());
        assert!(StreamEntry::from_reply(Reply::Array(vec![b("1-0"), Reply::Nil])).is_none());
    }
}
