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
    inner: S,
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
        return pass_through(shared, inner, request, Forward::Bypass, Some("no-host")).await;
    }
    let key = primary_key(request.uri(), request.headers().get(header::HOST));
    if method != Method::GET && method != Method::HEAD {
        return forward_unsafe(&cache, inner, request, &key).await;
    }
    let directives = RequestDirectives::from_headers(request.headers());
    if directives.no_store {
        shared.stats.record(Event::Bypassed);
        return pass_through(shared, inner, request, Forward::Request, None).await;
    }
    let variants = match shared.store.get(&key, &shared.config.policy).await {
        Ok(variants) => variants,
        Err(error) => {
            tracing::warn!(target: "palisade::cache", %error, "cache store unavailable: passing the request through");
            shared.stats.record(Event::StoreError);
            let detail = Some("store-unavailable");
            return pass_through(shared, inner, request, Forward::Miss, detail).await;
        }
    };
    let selected = variants
        .iter()
        .find(|e| e.selection().matches(request.headers()))
        .cloned();
    match selected {
        Some(entry) => from_stored(&cache, inner, request, directives, key, entry).await,
        None if directives.only_if_cached => {
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
            let asked = Asked {
                method,
                headers: request.headers().clone(),
                directives,
                key,
            };
            miss(&cache, inner, request, asked, why).await
        }
    }
}

/// Forwards the request untouched and streams the answer back, saying why in `Cache-Status`.
async fn pass_through<S, St, ReqB, ResB>(
    shared: &crate::cache::Inner<St>,
    mut inner: S,
    request: Request<ReqB>,
    why: Forward,
    detail: Option<&'static str>,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    let response = inner.call(request).await?;
    let status = CacheStatus {
        fwd: Some(why),
        fwd_status: Some(response.status().as_u16()),
        detail,
        ..Default::default()
    };
    Ok(mark(response.map(PrefixedBody::streamed), shared, &status))
}

/// Whether `Host` names an authority (`host[:port]`, nothing else).
fn valid_host(host: Option<&http::HeaderValue>) -> bool {
    host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .is_some_and(|a| !a.as_str().contains('@'))
}
