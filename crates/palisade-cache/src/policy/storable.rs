//! Whether a shared cache may store a response (RFC 9111 §3, §3.5).

use http::{HeaderMap, Method, StatusCode, header};

use super::{
    directives::{RequestDirectives, ResponseDirectives, Scope},
    freshness::{has_explicit_expiration, heuristically_cacheable},
    vary,
};

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only responses to `GET` are stored.
    Method,
    /// 1xx, 206 (partial content is not assembled here) and 304 are not stored.
    Status,
    /// `no-store` on the request or the response (or `must-understand` on a status this cache
    /// does not understand).
    NoStore,
    /// `private`: for the user's own cache only.
    Private,
    /// The request carried `Authorization` and the response did not say a shared cache may
    /// store it (`public`, `s-maxage` or `must-revalidate`, §3.5).
    Authorization,
    /// `Vary: *`: no later request can match.
    VaryStar,
    /// Nothing makes it reusable: no explicit expiration, no `public`, and a status with no
    /// heuristic lifetime — or no freshness at all and no validator to revalidate it with.
    NotReusable,
    /// It sets a cookie, and the cache was told not to store those
    /// (`HttpCache::store_set_cookie`).
    SetCookie,
    /// Not a 200 to a request with a range or a precondition (`Range`, `If-Match`, …): it
    /// answers that request only (a 416 or 412 stored would be served to every client).
    Conditional,
}

/// Whether a request carries a range or a precondition: its answer may be about the request
/// more than the resource.
pub fn is_conditional(request: &HeaderMap) -> bool {
    [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
    ]
    .iter()
    .any(|name| request.contains_key(name))
}

impl NotStorable {
    /// A short label for metrics and `Cache-Status` details.
    pub fn label(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NotReusable => "not-reusable",
            NotStorable::Conditional => "conditional",
            NotStorable::SetCookie => "set-cookie",
        }
    }
}

/// Status codes whose semantics this cache implements, for `must-understand` (§5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether the response to `method` with `request_headers` may be stored.
pub fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    request: &RequestDirectives,
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    targeted: bool,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    if request.no_store {
        return Err(NotStorable::NoStore);
    }
    if status != StatusCode::OK && is_conditional(request_headers) {
        return Err(NotStorable::Conditional);
    }
    if directives.must_understand {
        if !understood(status) {
            return Err(NotStorable::NoStore);
        }
        // An understood status: must-understand overrides no-store.
    } else if directives.no_store {
        return Err(NotStorable::NoStore);
    }
    if directives.private == Scope::All {
        return Err(NotStorable::Private);
    }
    if request_headers.contains_key(header::AUTHORIZATION)
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if vary::is_star(headers) {
        return Err(NotStorable::VaryStar);
    }
    let reusable = has_explicit_expiration(headers, directives, targeted)
        || directives.public
        || heuristically_cacheable(status);
    if !reusable {
        return Err(NotStorable::NotReusable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(
        req: &[(&'static str, &'static str)],
        status: u16,
        resp: &[(&'static str, &'static str)],
    ) -> Result<(), NotStorable> {
        let mut rh = HeaderMap::new();
        for (k, v) in req {
            rh.append(*k, HeaderValue::from_static(v));
        }
        let mut h = HeaderMap::new();
        for (k, v) in resp {
            h.append(*k, HeaderValue::from_static(v));
        }
        storable(
            &Method::GET,
            &rh,
            &RequestDirectives::from_headers(&rh),
            StatusCode::from_u16(status).unwrap(),
            &h,
            &ResponseDirectives::from_headers(&h),
            false,
        )
    }

    #[test]
    fn the_rules() {
        assert_eq!(check(&[], 200, &[]), Ok(()));
        assert_eq!(check(&[], 201, &[]), Err(NotStorable::NotReusable));
        assert_eq!(check(&[], 201, &[("cache-control", "max-age=5")]), Ok(()));
        assert_eq!(
            check(&[], 200, &[("cache-control", "no-store")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            check(&[], 200, &[("cache-control", "no-store, must-understand")]),
            Ok(())
        );
        assert_eq!(
            check(&[], 200, &[("cache-control", "private")]),
            Err(NotStorable::Private)
        );
        assert_eq!(
            check(
                &[],
                200,
                &[("cache-control", "private=\"x-user\", max-age=5")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "max-age=5")]
            ),
            Err(NotStorable::Authorization)
        );
        assert_eq!(
            check(
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "s-maxage=5")]
            ),
            Ok(())
        );
        assert_eq!(
            check(&[], 200, &[("vary", "a, *")]),
            Err(NotStorable::VaryStar)
        );
        assert_eq!(
            check(&[("cache-control", "no-store")], 200, &[]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            check(&[], 206, &[("cache-control", "max-age=5")]),
            Err(NotStorable::Status)
        );
    }
}
