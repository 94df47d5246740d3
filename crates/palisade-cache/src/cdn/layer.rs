//! [`CdnHeadersLayer`]: stamps a route's [`CdnPolicy`] on its responses.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::policy::{CdnHeaders, CdnPolicy, CdnPolicyError};

/// Sets `Cache-Control`, `CDN-Cache-Control`, `Surrogate-Key` and `Vary` on the responses of
/// the routes it wraps, from a [`CdnPolicy`] — for services that sit behind a CDN or an edge
/// cache. Headers the handler set itself are kept unless the policy says `overwrite` — and a
/// handler's own `Cache-Control` also keeps the policy's `CDN-Cache-Control` off (it would
/// override the handler's `private` at the CDN); `Vary` is merged; error responses are left
/// alone unless `errors_too`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use palisade_cache::{CdnHeadersLayer, CdnPolicy};
/// use tower::{Layer, ServiceExt};
///
/// let catalog = CdnHeadersLayer::new(CdnPolicy {
///     max_age: Some(Duration::from_secs(60)),
///     surrogate_keys: vec!["catalog".into()],
///     ..CdnPolicy::default()
/// })
/// .unwrap();
/// let svc = catalog.layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(()))
/// }));
/// let response = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.headers()["cache-control"], "public, max-age=60");
/// assert_eq!(response.headers()["surrogate-key"], "catalog");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CdnHeadersLayer {
    stamp: Arc<Stamp>,
}

#[derive(Debug)]
struct Stamp {
    headers: CdnHeaders,
    overwrite: bool,
    errors_too: bool,
}

impl CdnHeadersLayer {
    /// A layer stamping `policy` (checked here: a bad surrogate key or `vary` name is an error
    /// at start-up, not on a request).
    pub fn new(policy: CdnPolicy) -> Result<Self, CdnPolicyError> {
        Ok(CdnHeadersLayer {
            stamp: Arc::new(Stamp {
                headers: policy.headers()?,
                overwrite: policy.overwrite,
                errors_too: policy.errors_too,
            }),
        })
    }
}

impl<S> Layer<S> for CdnHeadersLayer {
    type Service = WithCdnHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithCdnHeaders {
            inner,
            stamp: self.stamp.clone(),
        }
    }
}

/// The service of [`CdnHeadersLayer`].
#[derive(Debug, Clone)]
pub struct WithCdnHeaders<S> {
    inner: S,
    stamp: Arc<Stamp>,
}

impl<S> WithCdnHeaders<S> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, Req, B> Service<Req> for WithCdnHeaders<S>
where
    S: Service<Req, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = CdnFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        CdnFuture {
            inner: self.inner.call(request),
            stamp: self.stamp.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`CdnHeadersLayer`]'s service: the inner future, then the
    /// stamp.
    pub struct CdnFuture<F> {
        #[pin]
        inner: F,
        stamp: Arc<Stamp>,
    }
}

impl<F, B, E> Future for CdnFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let stamp = &**this.stamp;
        let status = response.status();
        if !stamp.errors_too && (status.is_client_error() || status.is_server_error()) {
            return Poll::Ready(Ok(response));
        }
        let headers = response.headers_mut();
        let set = |headers: &mut http::HeaderMap, name, value: &Option<http::HeaderValue>| {
            if let Some(value) = value {
                if stamp.overwrite || !headers.contains_key(&name) {
                    headers.insert(name, value.clone());
                }
            }
        };
        // A handler that set its own Cache-Control decided how its response is cached — for
        // CDNs too: a CDN-Cache-Control added beside a handler's `private` would make a CDN
        // share it (CDNs obey CDN-Cache-Control over Cache-Control).
        let handler_decided = !stamp.overwrite && headers.contains_key(header::CACHE_CONTROL);
        set(headers, header::CACHE_CONTROL, &stamp.headers.cache_control);
        if !handler_decided {
            set(
                headers,
                http::HeaderName::from_static("cdn-cache-control"),
                &stamp.headers.cdn_cache_control,
            );
        }
        set(
            headers,
            http::HeaderName::from_static("surrogate-key"),
            &stamp.headers.surrogate_key,
        );
        for name in &stamp.headers.vary {
            let listed = headers.get_all(header::VARY).iter().any(|v| {
                v.to_str()
                    .unwrap_or("")
                    .split(',')
                    .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
            });
            if !listed {
                headers.append(header::VARY, http::HeaderValue::from_name(name.clone()));
            }
        }
        Poll::Ready(Ok(response))
    }
}
