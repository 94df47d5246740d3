//! [`Origin`]: the service behind the cache — every request forwarded to `EDGE_UPSTREAM` over
//! one pooled hyper-util client.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade::cache::policy::validation::is_hop_by_hop;

/// What this proxy adds to `Via` (RFC 9110 §7.6.3).
pub const VIA: &str = "1.1 palisade-edge";

/// Forwards requests to the upstream: the target's path and query appended to the upstream
/// base, the client's `Host` kept (replaced by the target's host for an absolute-form
/// target), hop-by-hop fields dropped both ways (RFC 9110 §7.6.1), `Via` added to responses,
/// and a `Date` added to responses that lack one (§6.6.1). Bodies
/// stream both ways. An upstream that cannot be reached answers 502, one slower than the
/// timeout 504 (problem+json) — never an error, so stale-if-error can step in.
#[derive(Clone)]
pub struct Origin {
    client: Client<HttpConnector, Body>,
    base: Uri,
    timeout: Duration,
}

impl Origin {
    /// Forwards to `base` (`http://host:port[/prefix]`), each exchange within `timeout`.
    pub fn new(base: Uri, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Origin {
            client,
            base,
            timeout,
        }
    }

    fn upstream_uri(&self, target: &Uri) -> Result<Uri, http::Error> {
        let prefix = self.base.path().trim_end_matches('/');
        let path = target.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Uri::builder();
        if let Some(scheme) = self.base.scheme() {
            builder = builder.scheme(scheme.clone());
        }
        if let Some(authority) = self.base.authority() {
            builder = builder.authority(authority.clone());
        }
        builder.path_and_query(format!("{prefix}{path}")).build()
    }
}

/// Drops hop-by-hop fields (and those `Connection` names): they are for one connection, not
/// the next (RFC 9110 §7.6.1).
pub fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let hop: Vec<_> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name, headers))
        .cloned()
        .collect();
    for name in hop {
        headers.remove(name);
    }
}

/// Appends this proxy to `Via` (RFC 9110 §7.6.3).
pub fn add_via(headers: &mut HeaderMap) {
    headers.append(header::VIA, HeaderValue::from_static(VIA));
}

fn problem(status: StatusCode, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Marks a response the proxy made for an origin it could not reach: the cache may answer
/// with a stale stored response instead (RFC 9111 §4.2.4).
fn unreachable(mut response: Response<Body>) -> Response<Body> {
    response
        .extensions_mut()
        .insert(palisade::cache::OriginUnreachable);
    response
}

impl tower::Service<Request<Body>> for Origin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // hyper-util's client is always ready (it pools and queues per host).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let uri = match self.upstream_uri(&parts.uri) {
            Ok(uri) => uri,
            Err(_) => {
                let answer = problem(
                    StatusCode::BAD_REQUEST,
                    "the request target cannot be forwarded",
                );
                return Box::pin(async move { Ok(answer) });
            }
        };
        // An absolute-form target names the host: it, not the client's `Host`, is what was
        // asked for and what the cache keyed (RFC 9112 §3.2.2).
        if let Some(authority) = parts.uri.authority() {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        // The proxy's front door dropped them already (before the cache read the request);
        // again here for any other caller.
        drop_hop_by_hop(&mut parts.headers);
        let (client, timeout) = (self.client.clone(), self.timeout);
        Box::pin(async move {
            let sent = client.request(Request::from_parts(parts, body));
            let response = match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "upstream request failed");
                    return Ok(unreachable(problem(
                        StatusCode::BAD_GATEWAY,
                        "the upstream could not be reached",
                    )));
                }
                Err(_) => {
                    return Ok(unreachable(problem(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("the upstream did not answer within {timeout:?}"),
                    )));
                }
            };
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            add_via(&mut parts.headers);
            if !parts.headers.contains_key(header::DATE) {
                let now = httpdate::fmt_http_date(std::time::SystemTime::now());
                if let Ok(date) = HeaderValue::from_str(&now) {
                    parts.headers.insert(header::DATE, date);
                }
            }
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}
