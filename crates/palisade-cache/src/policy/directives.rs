//! `Cache-Control` directives (RFC 9111 §5.2), read leniently and never with a panic.
//!
//! A field is a comma-separated list over every line of the header; each member is
//! `name[=value]`, the value a token or a quoted string (commas inside quotes do not split).
//! Names are case-insensitive. Unknown directives are ignored (§5.2.3).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The largest delta-seconds a cache needs to represent: larger values are taken as this
/// (RFC 9111 §1.2.2).
pub const MAX_DELTA: u64 = 1 << 31;

/// One directive as written: its lowercased name and its value, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// Every directive of every `name` line of `headers`, in order.
pub(crate) fn directives_of(headers: &HeaderMap, name: &HeaderName) -> Vec<Directive> {
    let mut out = Vec::new();
    for line in headers.get_all(name) {
        split_line(line, &mut out);
    }
    out
}

fn split_line(line: &HeaderValue, out: &mut Vec<Directive>) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Name: up to '=' or ','.
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let name = String::from_utf8_lossy(&bytes[start..i])
            .trim()
            .to_ascii_lowercase();
        let mut value = None;
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'"' {
                // quoted-string: backslash escapes the next byte.
                i += 1;
                let mut text = Vec::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    text.push(bytes[i]);
                    i += 1;
                }
                i += 1; // the closing quote (or the end)
                value = Some(String::from_utf8_lossy(&text).into_owned());
                // Anything up to the next comma is junk after the quote.
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
            } else {
                let start = i;
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
                value = Some(String::from_utf8_lossy(&bytes[start..i]).trim().to_owned());
            }
        }
        if !name.is_empty() {
            out.push(Directive { name, value });
        }
        i += 1; // the comma
    }
}

/// A delta-seconds argument: digits only (quoted or not), capped at [`MAX_DELTA`]; `None` when
/// absent or not a non-negative integer.
pub(crate) fn delta_seconds(value: Option<&str>) -> Option<u64> {
    let value = value?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().map_or(MAX_DELTA, |v| v.min(MAX_DELTA)))
}

/// A directive that may name fields (`no-cache`, `private`): all of the response, or only
/// the listed fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Not present.
    #[default]
    Absent,
    /// Present without field names: the whole response.
    All,
    /// Present with field names (`no-cache="set-cookie"`): those fields only.
    Fields(Vec<HeaderName>),
}

impl Scope {
    fn from_value(value: Option<&str>) -> Scope {
        match value {
            None => Scope::All,
            Some(list) => {
                let fields: Vec<HeaderName> = list
                    .split(',')
                    .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
                    .collect();
                if fields.is_empty() {
                    Scope::All
                } else {
                    Scope::Fields(fields)
                }
            }
        }
    }

    /// Whether the directive is present in any form.
    pub fn is_present(&self) -> bool {
        !matches!(self, Scope::Absent)
    }

    fn merge(&mut self, other: Scope) {
        *self = match (std::mem::take(self), other) {
            (Scope::All, _) | (_, Scope::All) => Scope::All,
            (Scope::Absent, other) => other,
            (this, Scope::Absent) => this,
            (Scope::Fields(mut a), Scope::Fields(b)) => {
                a.extend(b);
                Scope::Fields(a)
            }
        }
    }
}

/// The caching directives of a response (from `Cache-Control`, or from the targeted field
/// that replaces it for this cache).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `max-age`: `Some(0)` when present but invalid (invalid freshness counts as stale,
    /// §4.2.1); the first occurrence wins.
    pub max_age: Option<u64>,
    /// `s-maxage` (shared caches only), read as `max-age`.
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`.
    pub no_cache: Scope,
    /// `private`.
    pub private: Scope,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
}

impl ResponseDirectives {
    /// Reads the `Cache-Control` lines of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_directives(directives_of(headers, &http::header::CACHE_CONTROL))
    }

    pub(crate) fn from_directives(list: Vec<Directive>) -> Self {
        let mut d = ResponseDirectives::default();
        for Directive { name, value } in list {
            let value = value.as_deref();
            match name.as_str() {
                "max-age" => first(&mut d.max_age, delta_seconds(value).unwrap_or(0)),
                "s-maxage" => first(&mut d.s_maxage, delta_seconds(value).unwrap_or(0)),
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache.merge(Scope::from_value(value)),
                "private" => d.private.merge(Scope::from_value(value)),
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "immutable" => d.immutable = true,
                "stale-while-revalidate" => {
                    if let Some(v) = delta_seconds(value) {
                        first(&mut d.stale_while_revalidate, v)
                    }
                }
                "stale-if-error" => {
                    if let Some(v) = delta_seconds(value) {
                        first(&mut d.stale_if_error, v)
                    }
                }
                _ => {}
            }
        }
        d
    }

    /// Whether anything here forbids serving the response stale from a shared cache
    /// (§4.2.4): `no-cache`, `must-revalidate`, `proxy-revalidate` or `s-maxage`.
    pub fn forbids_stale(&self) -> bool {
        self.no_cache == Scope::All
            || self.must_revalidate
            || self.proxy_revalidate
            || self.s_maxage.is_some()
    }
}

fn first(slot: &mut Option<u64>, value: u64) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// How much staleness a request accepts (`max-stale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without a value: any.
    Any,
    /// `max-stale=N`.
    Seconds(u64),
}

/// The caching directives of a request (`Cache-Control`, or `Pragma: no-cache` when the
/// request has no `Cache-Control`, §5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age`: the oldest response the client accepts.
    pub max_age: Option<u64>,
    /// `max-stale`.
    pub max_stale: Option<MaxStale>,
    /// `min-fresh`: the freshness the response must still have.
    pub min_fresh: Option<u64>,
    /// `no-cache` (or `Pragma: no-cache`): revalidate before using a stored response.
    pub no_cache: bool,
    /// `no-store`: neither use nor store.
    pub no_store: bool,
    /// `only-if-cached`: answer from the store or with 504.
    pub only_if_cached: bool,
    /// `stale-if-error` (RFC 5861 §4) as a request directive.
    pub stale_if_error: Option<u64>,
}

impl RequestDirectives {
    /// Reads a request's `Cache-Control` (and `Pragma`).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        if !headers.contains_key(http::header::CACHE_CONTROL) {
            d.no_cache = directives_of(headers, &http::header::PRAGMA)
                .iter()
                .any(|p| p.name == "no-cache");
            return d;
        }
        for Directive { name, value } in directives_of(headers, &http::header::CACHE_CONTROL) {
            let value = value.as_deref();
            match name.as_str() {
                "max-age" => {
                    if let Some(v) = delta_seconds(value) {
                        first(&mut d.max_age, v)
                    }
                }
                "max-stale" if d.max_stale.is_none() => {
                    d.max_stale = match value {
                        None => Some(MaxStale::Any),
                        v => delta_seconds(v).map(MaxStale::Seconds),
                    }
                }
                "min-fresh" => {
                    if let Some(v) = delta_seconds(value) {
                        first(&mut d.min_fresh, v)
                    }
                }
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "stale-if-error" => {
                    if let Some(v) = delta_seconds(value) {
                        first(&mut d.stale_if_error, v)
                    }
                }
                _ => {}
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(lines: &[&str]) -> ResponseDirectives {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                http::header::CACHE_CONTROL,
                HeaderValue::from_str(line).unwrap(),
            );
        }
        ResponseDirectives::from_headers(&headers)
    }

    #[test]
    fn lines_quotes_and_case() {
        let d = response(&["Max-Age=60, no-cache=\"set-cookie, x-a\"", "PUBLIC"]);
        assert_eq!(d.max_age, Some(60));
        assert!(d.public);
        assert_eq!(
            d.no_cache,
            Scope::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-a")
            ])
        );
        assert_eq!(response(&["max-age=\"30\""]).max_age, Some(30));
    }

    #[test]
    fn invalid_freshness_is_stale_and_the_first_occurrence_wins() {
        assert_eq!(response(&["max-age=abc"]).max_age, Some(0));
        assert_eq!(response(&["max-age=-1"]).max_age, Some(0));
        assert_eq!(response(&["max-age=10, max-age=20"]).max_age, Some(10));
        assert_eq!(
            response(&["max-age=99999999999999999999"]).max_age,
            Some(MAX_DELTA)
        );
        assert_eq!(response(&["max-age"]).max_age, Some(0));
    }

    #[test]
    fn junk_never_panics() {
        for junk in [
            "",
            ",,,",
            "=",
            "=5",
            "\"",
            "a=\"unterminated",
            "max-age=\"1",
            "é=ü",
        ] {
            let _ = response(&[junk]);
        }
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(RequestDirectives::from_headers(&headers).no_cache);
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=5"),
        );
        let d = RequestDirectives::from_headers(&headers);
        assert!(!d.no_cache);
        assert_eq!(d.max_age, Some(5));
    }
}
