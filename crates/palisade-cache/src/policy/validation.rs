//! Validation (RFC 9111 §4.3): conditional requests to the origin, freshening a stored
//! response from a 304, and answering a client's own conditional request.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::freshness::http_date;

/// Fields never stored nor copied from one response to another: hop-by-hop fields (RFC 9110
/// §7.6.1) and those the response's `Connection` names.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    const HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ];
    let name = name.as_str();
    if HOP.contains(&name) || name == "upgrade" {
        return true;
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .any(|listed| listed.trim().eq_ignore_ascii_case(name))
}

/// Whether the stored response can be validated (it has an `ETag` or a `Last-Modified`).
pub fn has_validator(stored: &HeaderMap) -> bool {
    stored.contains_key(header::ETAG) || stored.contains_key(header::LAST_MODIFIED)
}

/// Makes `outgoing` (a request's headers) a validation of `stored`: its `ETag` as
/// `If-None-Match`, its `Last-Modified` as `If-Modified-Since`; the client's own
/// preconditions and `Range` are dropped (the cache answers those itself, from the whole
/// representation it validates).
pub fn make_conditional(outgoing: &mut HeaderMap, stored: &HeaderMap) {
    for name in [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        outgoing.remove(name);
    }
    for etag in stored.get_all(header::ETAG) {
        outgoing.append(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        outgoing.insert(header::IF_MODIFIED_SINCE, modified.clone());
    }
}

/// Updates a stored response's fields from a 304 (or a HEAD response) that validated it
/// (§3.2, §4.3.4): every field of `update` replaces the stored one, except hop-by-hop fields
/// and `Content-Length`.
pub fn freshen(stored: &mut HeaderMap, update: &HeaderMap) {
    let names: Vec<&HeaderName> = update.keys().collect();
    for name in names {
        if *name == header::CONTENT_LENGTH || is_hop_by_hop(name, update) {
            continue;
        }
        stored.remove(name);
        for value in update.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// Whether a 304 with `update` validates `stored` (§4.3.4): when both carry a strong `ETag`
/// they must be equal; otherwise it is taken as validating it.
pub fn validates(stored: &HeaderMap, update: &HeaderMap) -> bool {
    match (stored.get(header::ETAG), update.get(header::ETAG)) {
        (Some(a), Some(b)) if !is_weak(a) && !is_weak(b) => a == b,
        _ => true,
    }
}

/// Whether a 200 to a `HEAD` describes the stored `GET` response it was sent for, so it may
/// freshen it (RFC 9111 §4.3.5): every validator it carries (`ETag`, `Last-Modified`) equals
/// the stored one — at least one — and so does its `Content-Length`, if it has one.
pub fn head_validates(stored: &HeaderMap, head: &HeaderMap) -> bool {
    let same =
        |name: &http::HeaderName| head.get(name).map(|value| stored.get(name) == Some(value));
    let validators = [same(&header::ETAG), same(&header::LAST_MODIFIED)];
    validators.iter().any(|v| v.is_some())
        && validators.iter().all(|v| v.unwrap_or(true))
        && same(&header::CONTENT_LENGTH).unwrap_or(true)
}

fn is_weak(etag: &HeaderValue) -> bool {
    etag.as_bytes().starts_with(b"W/")
}

fn opaque(etag: &[u8]) -> &[u8] {
    etag.strip_prefix(b"W/").unwrap_or(etag)
}

/// Whether a client's `If-None-Match` / `If-Modified-Since` is satisfied by the stored
/// response, so the cache answers 304 (§4.3.2). `If-None-Match` takes precedence and uses
/// the weak comparison.
pub fn not_modified_for(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG) else {
            return false;
        };
        return request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .flat_map(|v| split_etags(v.as_bytes()))
            .any(|candidate| candidate == b"*" || opaque(candidate) == opaque(etag.as_bytes()));
    }
    let Some(since) = request.get(header::IF_MODIFIED_SINCE).and_then(http_date) else {
        return false;
    };
    let modified = stored
        .get(header::LAST_MODIFIED)
        .and_then(http_date)
        .or_else(|| stored.get(header::DATE).and_then(http_date));
    modified.is_some_and(|m| m <= since)
}

/// The members of an entity-tag list (commas inside quotes do not split).
fn split_etags(list: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in list.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(list[start..i].trim_ascii());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim_ascii());
    out.retain(|e| !e.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::test_support::header_map as map;

    #[test]
    fn conditional_from_validators() {
        let stored = map(&[
            ("etag", "\"a\""),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        let mut out = map(&[("if-none-match", "\"client\""), ("accept", "*/*")]);
        make_conditional(&mut out, &stored);
        assert_eq!(out["if-none-match"], "\"a\"");
        assert_eq!(out["if-modified-since"], "Mon, 01 Jan 2024 00:00:00 GMT");
        assert_eq!(out["accept"], "*/*");
    }

    #[test]
    fn freshen_keeps_length_and_hop_by_hop() {
        let mut stored = map(&[
            ("content-length", "5"),
            ("cache-control", "max-age=1"),
            ("x-a", "1"),
        ]);
        freshen(
            &mut stored,
            &map(&[
                ("content-length", "0"),
                ("cache-control", "max-age=9"),
                ("connection", "x-a"),
                ("x-a", "2"),
            ]),
        );
        assert_eq!(stored["content-length"], "5");
        assert_eq!(stored["cache-control"], "max-age=9");
        assert_eq!(stored["x-a"], "1");
    }

    #[test]
    fn client_conditionals() {
        let stored = map(&[
            ("etag", "W/\"a\""),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        assert!(not_modified_for(
            &map(&[("if-none-match", "\"x\", \"a\"")]),
            &stored
        ));
        assert!(not_modified_for(&map(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified_for(
            &map(&[("if-none-match", "\"b\"")]),
            &stored
        ));
        assert!(not_modified_for(
            &map(&[("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT")]),
            &stored
        ));
        assert!(!not_modified_for(
            &map(&[("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT")]),
            &stored
        ));
        assert!(validates(
            &map(&[("etag", "\"a\"")]),
            &map(&[("etag", "\"a\"")])
        ));
        assert!(!validates(
            &map(&[("etag", "\"a\"")]),
            &map(&[("etag", "\"b\"")])
        ));
    }
}
