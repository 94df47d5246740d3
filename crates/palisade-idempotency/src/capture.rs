//! The owner's response: kept (what headers, what body) and stored, or the claim settled
//! otherwise.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Response, header};
use http_body::Body;
use palisade_core::{
    body::{Collected, collect_within},
    wire::grpc_failed,
};

use crate::{
    IdempotencyBody,
    body::BoxError,
    claim_guard::ClaimGuard,
    metrics::count,
    policy::Config,
    record::{NOT_KEPT, StoredResponse},
    store::IdempotencyStore,
};

// The owner's response: stored when it should be, otherwise the claim is released.
pub(crate) async fn finish<S, ResB>(
    config: &Config,
    guard: ClaimGuard<S>,
    response: Response<ResB>,
) -> Response<IdempotencyBody<ResB>>
where
    S: IdempotencyStore,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (head, body) = response.into_parts();
    if head.status.is_server_error() || grpc_failed(&head.headers) {
        // A failure the handler did not declare harmless: its effect may have happened.
        count("not_stored");
        guard.failed(&head.extensions).await;
        return Response::from_parts(head, IdempotencyBody::streamed(body));
    }
    if head.status.is_client_error() && !config.store_client_errors {
        count("not_stored");
        guard.release().await;
        return Response::from_parts(head, IdempotencyBody::streamed(body));
    }
    // Decided without an await, so the body's error (possibly not `Send`) is boxed before
    // the claim is settled.
    let (body, settle) = match collect_within(body, config.max_response_body).await {
        Collected::Complete { data, trailers } => {
            let settle = if trailers.as_ref().is_some_and(grpc_failed) {
                Settle::Failed
            } else {
                let stored = StoredResponse {
                    status: head.status,
                    headers: kept_headers(&head.headers, config),
                    body: data.clone(),
                    trailers: trailers.clone(),
                };
                Settle::Complete(stored.encode())
            };
            (IdempotencyBody::whole(data, trailers), settle)
        }
        Collected::TooLarge { prefix, rest } => {
            tracing::warn!(
                target: "palisade::idempotency",
                limit = config.max_response_body,
                "response too large to keep; retries with this key will get 409"
            );
            let settle = Settle::Complete(Bytes::from_static(NOT_KEPT));
            (IdempotencyBody::prefixed(prefix, rest), settle)
        }
        // The handler answered, then its body failed: what it did is not known.
        Collected::Failed { prefix, error } => {
            (IdempotencyBody::failed(prefix, error), Settle::Unknown)
        }
    };
    match settle {
        Settle::Complete(stored) => guard.complete(stored).await,
        Settle::Failed => {
            count("not_stored");
            guard.failed(&head.extensions).await;
        }
        Settle::Unknown => guard.unknown().await,
    }
    Response::from_parts(head, body)
}

/// How a buffered response settles its claim.
enum Settle {
    /// Completed with this stored response.
    Complete(Bytes),
    /// A failure the handler did not declare harmless.
    Failed,
    /// The outcome is not known.
    Unknown,
}

const NEVER_KEPT: [HeaderName; 11] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::DATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

fn kept_headers(headers: &HeaderMap, config: &Config) -> HeaderMap {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let drop = NEVER_KEPT.contains(name)
            || (name == header::SET_COOKIE && !config.keep_set_cookie)
            || config.excluded_headers.contains(name)
            || listed.iter().any(|l| l == name.as_str());
        if !drop {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_cookies_are_not_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("connection", "x-trace, keep-alive".parse().unwrap());
        headers.insert("x-trace", "1".parse().unwrap());
        headers.insert("set-cookie", "s=1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("location", "/payments/1".parse().unwrap());
        let kept = kept_headers(&headers, &Config::default());
        let names: Vec<_> = kept.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "location"]);
        let config = Config {
            keep_set_cookie: true,
            ..Config::default()
        };
        assert!(kept_headers(&headers, &config).contains_key("set-cookie"));
    }
}
