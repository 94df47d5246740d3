//! The request-head and body limits of the payments service; the serving loop itself
//! (header read timeout, connection limit, graceful shutdown) is
//! [`palisade_examples::serve`].

use axum::body::Body;
use axum::{
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use http_body_util::BodyExt;
pub use palisade_examples::serve::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI, ServeLimits, serve};

use crate::problem;

/// Middleware: refuses an over-long target (414) or header block (431) with problem+json,
/// before anything else looks at the request.
pub async fn check_head(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI {
        return problem::head_too_large(
            StatusCode::URI_TOO_LONG,
            &format!("the request target is over {MAX_URI} bytes"),
        );
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return problem::head_too_large(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("at most {MAX_HEADERS} header fields and {MAX_HEADER_BYTES} bytes"),
        );
    }
    next.run(request).await
}

/// Middleware: reads the whole request body within `limits.body_timeout` and up to
/// `limits.max_body` bytes (408 / 413 problem+json otherwise), then hands it on buffered, so no
/// layer or handler behind it waits on a slow client.
pub async fn read_body_within(limits: ServeLimits, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, limits.max_body);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => problem::invalid(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {} bytes", limits.max_body),
        ),
        Ok(Err(_)) => problem::invalid(StatusCode::BAD_REQUEST, "the body could not be read"),
        Err(_) => problem::timeout(&format!(
            "the body did not arrive within {:?}",
            limits.body_timeout
        ))
        .into_response(),
    }
}
