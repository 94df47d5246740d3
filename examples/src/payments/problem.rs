//! RFC 9457 problem+json answers for the handlers' own errors (the layers render theirs).

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use palisade::ProblemDetails;
pub use palisade_examples::problem::{method_not_allowed, respond, unavailable};

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

/// 404: no such route.
pub fn not_found() -> Response {
    palisade_examples::problem::not_found(
        "There is no such route; see the HTTP contract in examples/README.md.",
    )
}
