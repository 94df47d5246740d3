//! The admin port: `POST /purge`, `GET /stats`, `GET /health`.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderValue, StatusCode, Uri, header};
use palisade::{
    Either,
    cache::{HttpCache, PurgeMode},
};

use crate::EdgeStore;
use serde::Deserialize;
use serde_json::json;

/// A purge: exactly one of `url` (absolute, as clients request it) and `surrogate_key`;
/// `soft` marks stale instead of deleting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    url: Option<String>,
    surrogate_key: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// The admin routes over `cache`.
pub fn router(cache: HttpCache<EdgeStore>) -> Router {
    Router::new()
        .route("/purge", post(purge))
        .route("/stats", get(stats))
        .route("/health", get(health))
        .with_state(cache)
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn purge(State(cache): State<HttpCache<EdgeStore>>, body: Bytes) -> Response {
    let request: Purge = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"url\": …}} or {{\"surrogate_key\": …}} with an optional \"soft\": {error}"
                ),
            );
        }
    };
    let mode = if request.soft {
        PurgeMode::Soft
    } else {
        PurgeMode::Hard
    };
    let purged = match (&request.url, &request.surrogate_key) {
        (Some(url), None) => {
            let Ok(uri) = url.parse::<Uri>() else {
                return problem(StatusCode::BAD_REQUEST, "`url` is not a URL");
            };
            if uri.authority().is_none() {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "`url` must be absolute (http://host/path), as clients request it",
                );
            }
            cache.purge_url(&uri, mode).await
        }
        (None, Some(key)) if !key.is_empty() => cache.purge_surrogate_key(key, mode).await,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "give exactly one of `url` and `surrogate_key`",
            );
        }
    };
    match purged {
        Ok(purged) => axum::Json(json!({ "purged": purged, "soft": request.soft })).into_response(),
        Err(error) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the cache store is unavailable: {error}"),
        ),
    }
}

async fn stats(State(cache): State<HttpCache<EdgeStore>>) -> Response {
    let store = match cache.store() {
        Either::Left(memory) => {
            json!({ "kind": "memory", "uris": memory.len(), "bytes": memory.bytes() })
        }
        Either::Right(_) => json!({ "kind": "redis" }),
    };
    axum::Json(json!({ "cache": cache.stats(), "store": store })).into_response()
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}
