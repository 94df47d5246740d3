//! Redis key names: `<prefix>:<layer>:<namespace>:{<key>}`.
//!
//! The braces make the key material a Redis Cluster **hash tag**: every key a decision touches
//! for one client (say its per-second and its daily limit) lands in the same slot, so one
//! script can update them atomically on a cluster. Key material that is long or holds bytes
//! that could break the tag (`{`, `}`), the format (spaces, control bytes) or a log line is
//! replaced by its SHA-256 digest — never spliced raw.
//!
//! ```
//! use palisade_core::{key::Key, redis_key::RedisKeyBuilder};
//!
//! let keys = RedisKeyBuilder::new("ratelimit");
//! assert_eq!(
//!     keys.key("api", &Key::text("user", b"42")),
//!     "palisade:ratelimit:api:{user:42}"
//! );
//! let hostile = Key::text("header", b"a}b{c");
//! assert!(keys.key("api", &hostile).starts_with("palisade:ratelimit:api:{#"));
//! ```

use std::sync::Arc;

pub use crate::key::digest_hex;
use crate::key::{Key, MAX_KEY_MATERIAL, is_verbatim};

/// Builds the Redis key names of one layer.
#[derive(Debug, Clone)]
pub struct RedisKeyBuilder {
    prefix: Arc<str>,
    layer: &'static str,
}

impl RedisKeyBuilder {
    /// Keys of `layer` (`"ratelimit"`, `"lock"`…) under the default prefix `palisade`.
    pub fn new(layer: &'static str) -> Self {
        RedisKeyBuilder {
            prefix: Arc::from("palisade"),
            layer,
        }
    }

    /// Puts every key under `prefix` instead of `palisade` (one application per prefix, or one
    /// test per prefix). Unsafe bytes in the prefix are replaced by `_`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = sanitize(prefix).into();
        self
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of `key` in `namespace` (a policy name, say).
    pub fn key(&self, namespace: &str, key: &Key) -> String {
        match key {
            Key::Text(text) => self.build(namespace, text),
            other => self.build(namespace, &other.to_string()),
        }
    }

    /// The Redis key of the text name `name` in `namespace`: the same as
    /// `key(namespace, &Key::from(name))`, without building the [`Key`] (a lock name, say,
    /// which arrives as text).
    pub fn key_of_text(&self, namespace: &str, name: &str) -> String {
        if is_verbatim(name.as_bytes()) {
            self.build(namespace, name)
        } else {
            self.key(namespace, &Key::from(name))
        }
    }

    /// `<prefix>:<layer>:<namespace>:{<material>}`, the material digested when unsafe.
    fn build(&self, namespace: &str, material: &str) -> String {
        let mut out = String::with_capacity(
            self.prefix.len() + self.layer.len() + namespace.len() + material.len().min(40) + 6,
        );
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(self.layer);
        out.push(':');
        push_sanitized(&mut out, namespace);
        out.push_str(":{");
        if is_safe_material(material.as_bytes()) {
            out.push_str(material);
        } else {
            out.push('#');
            out.push_str(&digest_hex(material.as_bytes()));
        }
        out.push('}');
        out
    }
}

fn is_safe_material(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_KEY_MATERIAL
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'{' && *b != b'}')
}

fn sanitize(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    push_sanitized(&mut out, part);
    out
}

/// Appends `part` with every byte outside `[A-Za-z0-9._/-]` replaced by `_`.
fn push_sanitized(out: &mut String, part: &str) {
    out.extend(part.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_unsafe_material_is_hashed() {
        let b = RedisKeyBuilder::new("ratelimit").with_prefix("t 1");
        let long = Key::Text("x".repeat(500).into());
        let k = b.key("p", &long);
        assert!(k.starts_with("t_1:ratelimit:p:{#"), "{k}");
        assert_eq!(k.len(), "t_1:ratelimit:p:{#}".len() + 32);
        let ip = Key::Ip("2001:db8::".parse().unwrap());
        assert_eq!(b.key("p", &ip), "t_1:ratelimit:p:{ip:2001:db8::}");
        // Composite keys keep one hash tag.
        let both = Key::Composite(Arc::from([Key::Global, ip]));
        assert_eq!(b.key("p", &both), "t_1:ratelimit:p:{global|ip:2001:db8::}");
    }

    #[test]
    fn a_text_name_keys_as_its_key_does() {
        let b = RedisKeyBuilder::new("lock").with_prefix("t");
        let long = "o".repeat(300);
        for name in [
            "orders:42",
            "a b",
            "x#y",
            "a|b",
            "{tag}",
            "",
            "é",
            long.as_str(),
        ] {
            assert_eq!(
                b.key_of_text("l", name),
                b.key("l", &Key::from(name)),
                "{name:?}"
            );
        }
    }
}
