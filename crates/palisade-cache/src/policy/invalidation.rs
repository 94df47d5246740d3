//! Invalidation after unsafe methods (RFC 9111 §4.4).

use http::{HeaderMap, Method, StatusCode, Uri, header};

/// Whether `method` is safe (RFC 9110 §9.2.1): it cannot change the resource.
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a response to `method` invalidates stored responses: an unsafe method that
/// succeeded (a non-error status, 2xx or 3xx).
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !is_safe(method) && (status.is_success() || status.is_redirection())
}

/// The URIs to invalidate: the target, and the `Location` and `Content-Location` of the
/// response when they are on the same origin (an absolute URI elsewhere is ignored; a
/// relative one is resolved against the target).
pub fn invalidated_uris(target: &Uri, response: &HeaderMap) -> Vec<Uri> {
    let mut out = vec![target.clone()];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = response.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Some(resolved) = same_origin_reference(target, value) else {
            continue;
        };
        if !out.contains(&resolved) {
            out.push(resolved);
        }
    }
    out
}

/// `reference` (a `Location` or `Content-Location` value) resolved against `target`, if it
/// is on the target's origin: an absolute path, a path relative to the target's, or an
/// absolute URI with the same scheme and authority.
pub fn same_origin_reference(target: &Uri, reference: &str) -> Option<Uri> {
    let value = reference.trim();
    if value.contains("://") {
        let uri = value.parse::<Uri>().ok()?;
        let same = uri.authority() == target.authority()
            && (target.scheme().is_none() || uri.scheme() == target.scheme());
        return same.then_some(uri);
    }
    let joined = if value.starts_with('/') {
        value.to_owned()
    } else {
        let base = target.path();
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{value}")
    };
    let mut parts = target.clone().into_parts();
    parts.path_and_query = Some(joined.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_locations_only() {
        let target: Uri = "http://a.example/x/y".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::LOCATION, "/other".parse().unwrap());
        h.insert(
            header::CONTENT_LOCATION,
            "http://b.example/z".parse().unwrap(),
        );
        let uris = invalidated_uris(&target, &h);
        assert_eq!(uris.len(), 2);
        assert_eq!(uris[1], "http://a.example/other");
        h.insert(header::CONTENT_LOCATION, "sibling".parse().unwrap());
        assert_eq!(
            invalidated_uris(&target, &h)[2],
            "http://a.example/x/sibling"
        );
        assert!(invalidates(&Method::POST, StatusCode::CREATED));
        assert!(!invalidates(
            &Method::POST,
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        assert!(!invalidates(&Method::GET, StatusCode::OK));
    }
}
