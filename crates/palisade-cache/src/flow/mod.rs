//! One request through the cache: look up, then serve, revalidate, coalesce or forward, and
//! store what the origin allows. The rules are the pure [`policy`](crate::policy); this is
//! the I/O around them.
//!
//! | file | step |
//! |---|---|
//! | `mod.rs` | the dispatch: unsafe methods, `no-store`, lookup, then stored or miss |
//! | `miss.rs` | nothing usable stored: coalescing in the process and across the fleet |
//! | `stored.rs` | a stored variant: serve, stale-while-revalidate, revalidate, stale-if-error |
//! | `storing.rs` | storing the origin's response when the rules allow it |
//! | `background.rs` | the background revalidation of stale-while-revalidate |
//! | `unsafe_methods.rs` | unsafe methods: forward, invalidate |

mod background;
mod miss;
mod stored;
mod storing;
mod unsafe_methods;

/// What every step of the journey uses (each file takes what it needs).
mod prelude {
    pub(super) use std::sync::Arc;

    pub(super) use bytes::Bytes;
    pub(super) use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
    pub(super) use http_body::Body;
    pub(super) use palisade_core::body::{BoxError, Collected, PrefixedBody, collect_within};
    pub(super) use tower_service::Service;

    pub(super) use crate::{
        Entry, HttpCache, OriginUnreachable,
        coalesce::{Joined, wait},
        policy::{
            cache_status::{CacheStatus, Forward},
            directives::RequestDirectives,
            freshness::{current_age, has_explicit_expiration},
            invalidation::{invalidated_uris, invalidates, same_origin_reference},
            primary_key, response_policy,
            reuse::{Reuse, RevalidateWhy, decide},
            storable::{NotStorable, is_conditional, storable},
            validation::{has_validator, head_validates, make_conditional, validates},
            vary::Selection,
        },
        serve::{from_entry, mark, only_if_cached},
        stats::Event,
        store::{PurgeMode, Store},
    };
}

use prelude::*;

use self::{miss::miss, stored::from_stored, unsafe_methods::forward_unsafe};

type Answer<ResB, E> = Result<Response<PrefixedBody<ResB>>, E>;

/// The request as the store needs it after the request itself went to the origin.
struct Asked {
    method: Method,
    headers: HeaderMap,
    directives: RequestDirectives,
    key: String,
}

pub(crate) async fn respond<S, St, ReqB, ResB>(
    cache: HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send,
    St: Store,
    ReqB: Default + Send + 'static,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Into<BoxError> + Send,
{
    let shared = &cache.inner;
    let method = request.method().clone();
    // A target with no host of its own and no valid `Host`: the cache cannot tell whose
    // resource it is, so it stays out of the way.
    if request.uri().authority().is_none() && !valid_host(request.headers().get(header::HOST)) {
        shared.stats.record(Event::Bypassed);
        let response = inner.call(request).await?;
        let status = CacheStatus {
            fwd: Some(Forward::Bypass),
            fwd_status: Some(response.status().as_u16()),
            detail: Some("no-host"),
            ..Default::default()
        };
        return Ok(mark(response.map(PrefixedBody::streamed), shared, &status));
    }
    let key = primary_key(request.uri(), request.headers().get(header::HOST));
    if method != Method::GET && method != Method::HEAD {
        return forward_unsafe(&cache, inner, request, &key).await;
    }
    let directives = RequestDirectives::from_headers(request.headers());
    if directives.no_store {
        shared.stats.record(Event::Bypassed);
        let response = inner.call(request).await?;
        let status = CacheStatus {
            fwd: Some(Forward::Request),
            fwd_status: Some(response.status().as_u16()),
            ..Default::default()
        };
        return Ok(mark(response.map(PrefixedBody::streamed), shared, &status));
    }
    let variants = match shared.store.get(&key, &shared.config.policy).await {
        Ok(variants) => variants,
        Err(error) => {
            tracing::warn!(target: "palisade::cache", %error, "cache store unavailable: passing the request through");
            shared.stats.record(Event::StoreError);
            let response = inner.call(request).await?;
            let status = CacheStatus {
                fwd: Some(Forward::Miss),
                fwd_status: Some(response.status().as_u16()),
                detail: Some("store-unavailable"),
                ..Default::default()
            };
            return Ok(mark(response.map(PrefixedBody::streamed), shared, &status));
        }
    };
    let selected = variants
        .iter()
        .find(|e| e.selection().matches(request.headers()))
        .cloned();
    let asked = Asked {
        method,
        headers: request.headers().clone(),
        directives,
        key,
    };
    match selected {
        Some(entry) => from_stored(&cache, inner, request, asked, entry).await,
        None if asked.directives.only_if_cached => {
            let status = CacheStatus {
                detail: Some("only-if-cached"),
                ..Default::default()
            };
            Ok(mark(only_if_cached(), shared, &status))
        }
        None => {
            let why = if variants.is_empty() {
                Forward::UriMiss
            } else {
                Forward::VaryMiss
            };
            miss(&cache, inner, request, asked, why).await
        }
    }
}

/// Whether `Host` names an authority (`host[:port]`, nothing else).
fn valid_host(host: Option<&http::HeaderValue>) -> bool {
    host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .is_some_and(|a| !a.as_str().contains('@'))
}
