//! JSON written with object keys sorted at every level: the one writer behind the canonical
//! body fingerprint and the Python-compatible client key.

use serde_json::Value;

/// How to write it.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    /// Between array items and object members: `","` (compact) or `", "` (Python).
    pub(crate) item: &'static str,
    /// Between a key and its value: `":"` or `": "`.
    pub(crate) key: &'static str,
    /// Escape every character outside printable ASCII as `\uXXXX` (Python's `ensure_ascii`).
    pub(crate) ascii: bool,
}

/// Compact, keys sorted, strings as serde_json writes them.
pub(crate) const CANONICAL: Style = Style {
    item: ",",
    key: ":",
    ascii: false,
};

/// Python's `json.dumps(value, sort_keys=True)`.
pub(crate) const PYTHON: Style = Style {
    item: ", ",
    key: ": ",
    ascii: true,
};

pub(crate) fn write_sorted(value: &Value, style: Style, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item);
                }
                write_sorted(item, style, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Python sorts str keys by code point; Rust's str order (UTF-8 bytes) is the same.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item);
                }
                write_string(k, style, out);
                out.push_str(style.key);
                write_sorted(v, style, out);
            }
            out.push('}');
        }
        Value::String(s) => write_string(s, style, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_string(s: &str, style: Style, out: &mut String) {
    if !style.ascii {
        out.push_str(&Value::String(s.to_owned()).to_string());
        return;
    }
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
