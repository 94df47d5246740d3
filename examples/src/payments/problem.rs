//! RFC 9457 problem+json answers for the handlers' own errors (the layers render theirs).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use palisade::ProblemDetails;

fn respond(problem: ProblemDetails) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, problem.to_bytes()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// 400 / 413 / 415 / 422: the request itself is wrong.
pub fn invalid(status: StatusCode, detail: &str) -> Response {
    let (type_uri, title) = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "https://palisade.rs/problems/unsupported-media-type",
            "Unsupported media type",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "https://palisade.rs/problems/invalid-payment",
            "Invalid payment",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "https://palisade.rs/problems/request-body-too-large",
            "Request body too large",
        ),
        _ => ("https://palisade.rs/problems/bad-request", "Bad request"),
    };
    respond(
        ProblemDetails::new(status)
            .with_type(type_uri, title)
            .with_detail(detail),
    )
}

/// 401: no `X-Api-Key`.
pub fn unauthorized() -> Response {
    let mut response = respond(
        ProblemDetails::new(StatusCode::UNAUTHORIZED)
            .with_type(
                "https://palisade.rs/problems/api-key-missing",
                "API key missing",
            )
            .with_detail("Send your API key in the X-Api-Key header."),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"));
    response
}

/// 502: the upstream failed even after the retries.
pub fn upstream(detail: &str, attempts: u32) -> Response {
    respond(
        ProblemDetails::new(StatusCode::BAD_GATEWAY)
            .with_type(
                "https://palisade.rs/problems/upstream-failed",
                "Upstream failed",
            )
            .with_detail(detail)
            .with_member("attempts", attempts),
    )
}

/// 503: a backend this handler needs (the ledger store) is unreachable.
pub fn unavailable(detail: &str) -> Response {
    let mut response = respond(
        ProblemDetails::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_type(
                "https://palisade.rs/problems/backend-unavailable",
                "Backend unavailable",
            )
            .with_detail(detail),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 408: the request did not arrive in time.
pub fn timeout(detail: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::REQUEST_TIMEOUT)
            .with_type(
                "https://palisade.rs/problems/request-timeout",
                "Request timeout",
            )
            .with_detail(detail),
    )
}

/// 404: no such route.
pub fn not_found() -> Response {
    respond(
        ProblemDetails::new(StatusCode::NOT_FOUND)
            .with_type("https://palisade.rs/problems/not-found", "Not found")
            .with_detail("There is no such route; see the HTTP contract in examples/README.md."),
    )
}

/// 405: the route exists, the method does not.
pub fn method_not_allowed() -> Response {
    respond(
        ProblemDetails::new(StatusCode::METHOD_NOT_ALLOWED)
            .with_type(
                "https://palisade.rs/problems/method-not-allowed",
                "Method not allowed",
            )
            .with_detail("This route does not answer that method."),
    )
}

/// 414 / 431: the request's target or header block is too large.
pub fn head_too_large(status: StatusCode, detail: &str) -> Response {
    respond(
        ProblemDetails::new(status)
            .with_type(
                "https://palisade.rs/problems/request-head-too-large",
                "Request head too large",
            )
            .with_detail(detail),
    )
}
