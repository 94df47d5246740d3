//! Responses the cache builds itself: from a stored entry (with `Age`, or as a 304 to a
//! client's precondition), the 504 of `only-if-cached`, and the `Cache-Status` it appends.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use palisade_core::{ProblemDetails, body::PrefixedBody};

use crate::{
    Entry,
    policy::{
        cache_status::CacheStatus,
        directives::Scope,
        range::{self, RangeAnswer},
        validation::not_modified_for,
    },
};

/// `Cache-Status`.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Appends this cache's member to `Cache-Status` (caches nearer the origin come first), and
/// counts why the request went forward, if it did.
pub(crate) fn mark<B, St>(
    mut response: Response<B>,
    cache: &crate::cache::Inner<St>,
    status: &CacheStatus,
) -> Response<B> {
    if let Some(why) = status.fwd {
        cache.stats.forwarded(why);
    }
    response
        .headers_mut()
        .append(CACHE_STATUS.clone(), status.to_header(&cache.config.name));
    response
}

/// Fields a 304 carries (RFC 9110 §15.4.5): those a 200 would have that describe the
/// representation's cache state, not its content.
const NOT_MODIFIED_FIELDS: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
];

/// The stored response as an answer to a request with `method` and `request` fields, aged
/// `age`: a 304 if the request's own precondition holds, one byte range (206, or 416) if it
/// asks for one, the body left out for `HEAD`, and
/// fields the origin marked `no-cache="…"` left out (they may not be sent unvalidated).
pub(crate) fn from_entry<B>(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    age: Duration,
    revalidated: bool,
) -> Response<PrefixedBody<B>> {
    let mut headers = entry.headers().clone();
    if !revalidated {
        if let Scope::Fields(fields) = &entry.policy().directives.no_cache {
            for name in fields {
                headers.remove(name);
            }
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    let conditional = request.contains_key(header::IF_NONE_MATCH)
        || request.contains_key(header::IF_MODIFIED_SINCE);
    if conditional && entry.status() == StatusCode::OK && not_modified_for(request, &headers) {
        let mut response = Response::new(PrefixedBody::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        for name in NOT_MODIFIED_FIELDS {
            for value in headers.get_all(&name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        return response;
    }
    if *method == Method::GET && entry.status() == StatusCode::OK {
        let len = entry.body().len() as u64;
        match range::answer(request, &headers, len) {
            RangeAnswer::Whole => {}
            RangeAnswer::Part { start, end } => {
                let part = entry.body().slice(start as usize..=end as usize);
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                        .expect("digits and punctuation"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                let mut response = Response::new(PrefixedBody::whole(part, None));
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                *response.headers_mut() = headers;
                return response;
            }
            RangeAnswer::Unsatisfiable => {
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).expect("digits"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                let mut response = Response::new(PrefixedBody::default());
                *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                *response.headers_mut() = headers;
                return response;
            }
        }
    }
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        entry.body().clone()
    };
    let mut response = Response::new(PrefixedBody::whole(body, None));
    *response.status_mut() = entry.status();
    *response.headers_mut() = headers;
    response
}

/// 504 for `only-if-cached` with nothing usable stored (RFC 9111 §5.2.1.7), problem+json.
pub(crate) fn only_if_cached<B>() -> Response<PrefixedBody<B>> {
    let problem = ProblemDetails::new(StatusCode::GATEWAY_TIMEOUT).with_detail(
        "The request asked for a stored response only (only-if-cached), and none is usable.",
    );
    let mut response = Response::new(PrefixedBody::whole(problem.to_bytes(), None));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
