//! The background revalidation of stale-while-revalidate: one per key, bounded in time.

use super::{
    Asked,
    prelude::*,
    stored::{fails, freshen},
    storing::store_response,
};

/// Stale-while-revalidate: one background request per key refreshes the stored response
/// (conditionally when it has validators), on the service instance readied for this request
/// (it was readied by `poll_ready` and is called once, as tower asks).
pub(super) fn revalidate_in_background<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    inner: S,
    request: &Request<ReqB>,
    key: &str,
    entry: &Arc<Entry>,
) where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send,
    St: Store,
    ReqB: Default + Send + 'static,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Into<BoxError> + Send,
{
    let Some(flight) = cache.inner.flights.try_lead(&format!("revalidate {key}")) else {
        return; // someone is already on it
    };
    let mut headers = request.headers().clone();
    let conditional = has_validator(entry.headers());
    if conditional {
        make_conditional(&mut headers, entry.headers());
    } else {
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
    }
    let mut background = Request::new(ReqB::default());
    *background.method_mut() = Method::GET;
    *background.uri_mut() = request.uri().clone();
    *background.version_mut() = request.version();
    *background.headers_mut() = headers.clone();
    let asked = Asked {
        method: Method::GET,
        directives: RequestDirectives::from_headers(&headers),
        headers,
        key: key.to_owned(),
    };
    let (cache, entry) = (cache.clone(), entry.clone());
    // Bounded: a hung origin (or a body trickling in) must not hold the key's revalidation,
    // or the task, forever.
    let limit = cache
        .inner
        .config
        .coalesce_wait
        .max(std::time::Duration::from_secs(30));
    tokio::spawn(async move {
        let _flight = flight;
        let revalidation = revalidate(&cache, inner, background, &asked, &entry, conditional);
        if tokio::time::timeout(limit, revalidation).await.is_err() {
            tracing::debug!(target: "palisade::cache", key = %asked.key, "background revalidation timed out");
        }
    });
}

/// The background revalidation itself: a 304 freshens the stored response, a storable
/// response replaces it, a failure leaves it as it was.
pub(super) async fn revalidate<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    background: Request<ReqB>,
    asked: &Asked,
    entry: &Entry,
    conditional: bool,
) where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: Store,
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError> + Send,
{
    let sent = cache.inner.config.clock.now();
    let response = match inner.call(background).await {
        Ok(response) => response,
        Err(_) => {
            tracing::debug!(target: "palisade::cache", key = %asked.key, "background revalidation failed");
            return;
        }
    };
    if conditional
        && response.status() == StatusCode::NOT_MODIFIED
        && validates(entry.headers(), response.headers())
    {
        let (parts, _) = response.into_parts();
        freshen::<St, ResB>(cache, asked, entry, sent, &parts, Forward::Stale).await;
    } else if !fails(response.status()) {
        drop(store_response(cache, asked, sent, response, CacheStatus::default()).await);
    }
}
