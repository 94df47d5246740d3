//! RFC 9457 problem+json answers the example services share (each service adds its own).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use palisade::ProblemDetails;

/// `problem` as a response with its status and `Content-Type: application/problem+json`.
pub fn respond(problem: ProblemDetails) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, problem.to_bytes()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// 400: the request could not be read.
pub fn bad_request(detail: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::BAD_REQUEST)
            .with_type("https://palisade.rs/problems/bad-request", "Bad request")
            .with_detail(detail),
    )
}

/// 413: the request body is over the limit.
pub fn body_too_large(detail: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::PAYLOAD_TOO_LARGE)
            .with_type(
                "https://palisade.rs/problems/request-body-too-large",
                "Request body too large",
            )
            .with_detail(detail),
    )
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

/// 422: the request is well-formed but its content is not acceptable; `type_uri` and
/// `title` name the kind (`invalid-order`, `invalid-amount`…).
pub fn unprocessable(type_uri: &'static str, title: &'static str, detail: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type(type_uri, title)
            .with_detail(detail),
    )
}

/// 503 with `Retry-After: 1`: a backend this handler needs is unreachable.
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

/// 404: no such route (or resource), with `detail`.
pub fn not_found(detail: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::NOT_FOUND)
            .with_type("https://palisade.rs/problems/not-found", "Not found")
            .with_detail(detail),
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
