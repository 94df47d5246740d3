//! `Vary` (RFC 9111 §4.1): which request fields select among stored responses for one URI.

use http::{HeaderMap, HeaderName, header};

/// Whether `Vary` lists `*` (no request can match).
pub fn is_star(headers: &HeaderMap) -> bool {
    names_in(headers).any(|n| n == "*")
}

fn names_in(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        // Lossy, not `to_str`: a line with one non-ASCII byte must not make the response vary
        // on nothing (it would be served to every request).
        .flat_map(|line| {
            String::from_utf8_lossy(line.as_bytes())
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|n| !n.is_empty())
}

/// The request fields a response varies on, and the values (normalised) the request that
/// fetched it had: what a later request must match to be served this response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    fields: Vec<(HeaderName, Option<String>)>,
}

impl Selection {
    /// The selection of a response with `response_headers`, fetched by `request_headers`.
    pub fn of(response_headers: &HeaderMap, request_headers: &HeaderMap) -> Selection {
        let mut fields: Vec<(HeaderName, Option<String>)> = Vec::new();
        for name in names_in(response_headers) {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            if fields.iter().all(|(n, _)| *n != name) {
                let value = normalised(request_headers, &name);
                fields.push((name, value));
            }
        }
        Selection { fields }
    }

    /// Whether `request_headers` select the stored response.
    pub fn matches(&self, request_headers: &HeaderMap) -> bool {
        self.fields
            .iter()
            .all(|(name, value)| normalised(request_headers, name) == *value)
    }

    /// Whether the response varies on nothing.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields and their values, for stores that serialise it.
    pub fn fields(&self) -> &[(HeaderName, Option<String>)] {
        &self.fields
    }

    /// A selection from stored fields.
    pub fn from_fields(fields: Vec<(HeaderName, Option<String>)>) -> Selection {
        Selection { fields }
    }
}

/// Every line of `name` joined, list members trimmed of whitespace: `a,  b` and `a,b` across
/// two lines select alike. Absent → `None`.
fn normalised(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = String::new();
    for line in lines {
        for member in String::from_utf8_lossy(line.as_bytes()).split(',') {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member.trim());
        }
    }
    // List fields whose members are case-insensitive and whose order carries no meaning
    // beyond their q-values: compare them sorted and lower-cased.
    if *name == header::ACCEPT_LANGUAGE || *name == header::ACCEPT_ENCODING {
        let mut members: Vec<String> = out
            .split(',')
            .map(|m| m.to_ascii_lowercase().replace(' ', ""))
            .collect();
        members.sort_unstable();
        out = members.join(",");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::test_support::header_map as map;

    #[test]
    fn selects_by_normalised_values() {
        let response = map(&[("vary", "Accept-Encoding, X-A"), ("vary", "x-a")]);
        let s = Selection::of(&response, &map(&[("accept-encoding", "gzip,  br")]));
        assert_eq!(s.fields().len(), 2);
        assert!(s.matches(&map(&[("accept-encoding", "gzip, br")])));
        assert!(s.matches(&map(&[
            ("accept-encoding", "gzip"),
            ("accept-encoding", "br")
        ])));
        assert!(!s.matches(&map(&[("accept-encoding", "br")])));
        assert!(!s.matches(&map(&[("accept-encoding", "gzip, br"), ("x-a", "1")])));
        assert!(is_star(&map(&[("vary", "x, *")])));
        // Regression (review): a non-ASCII byte on the line made the response vary on nothing.
        let mut odd = HeaderMap::new();
        odd.insert(
            "vary",
            http::HeaderValue::from_bytes(b"accept-language, x-\xe9").unwrap(),
        );
        let s = Selection::of(&odd, &map(&[("accept-language", "de")]));
        assert!(!s.matches(&map(&[("accept-language", "en")])));
        let s = Selection::of(
            &map(&[("vary", "accept-language")]),
            &map(&[("accept-language", "en, DE")]),
        );
        assert!(s.matches(&map(&[("accept-language", "de,en")])));
    }
}
