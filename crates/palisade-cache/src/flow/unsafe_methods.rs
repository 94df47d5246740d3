//! Unsafe methods: forwarded; a success invalidates what is stored for the target (RFC 9111
//! §4.4), and a `POST` naming its target in `Content-Location` may be stored for `GET`.

use super::{
    Answer, Asked,
    prelude::*,
    storing::{store_failed, store_response},
};

/// Unsafe methods go to the origin; a success invalidates what is stored for the target
/// URI and its same-origin `Location` / `Content-Location` (§4.4). A `POST` response that
/// names the target as its `Content-Location` and has explicit freshness is then stored as
/// the target's `GET` response (RFC 9110 §9.3.3).
pub(super) async fn forward_unsafe<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
    key: &str,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: Store,
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError> + Send,
{
    let shared = &cache.inner;
    shared.stats.record(Event::Bypassed);
    let method = request.method().clone();
    let posted = (method == Method::POST).then(|| request.headers().clone());
    let response = inner.call(request).await?;
    let target = key.parse::<Uri>().ok();
    if let Some(target) = target
        .as_ref()
        .filter(|_| invalidates(&method, response.status()))
    {
        let now = shared.config.clock.now();
        for uri in invalidated_uris(target, response.headers()) {
            let key = primary_key(&uri, None);
            if let Err(error) = shared.store.purge_key(&key, PurgeMode::Hard, now).await {
                let mut ignored = CacheStatus::default();
                store_failed(cache, &error, &mut ignored);
            }
        }
    }
    let status = CacheStatus::forward(Forward::Method);
    if let (Some(headers), Some(target)) = (posted, target) {
        let policy = response_policy(response.headers(), &shared.config.policy);
        let names_target = response
            .headers()
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| same_origin_reference(&target, v))
            .is_some_and(|uri| uri == target);
        if response.status().is_success()
            && names_target
            && has_explicit_expiration(response.headers(), &policy.directives, policy.targeted)
        {
            let asked = Asked {
                method: Method::GET,
                directives: RequestDirectives::from_headers(&headers),
                headers,
                key: key.to_owned(),
            };
            let sent = shared.config.clock.now();
            return Ok(store_response(cache, &asked, sent, response, status).await);
        }
    }
    let mut status = status;
    status.fwd_status = Some(response.status().as_u16());
    Ok(mark(response.map(PrefixedBody::streamed), shared, &status))
}
