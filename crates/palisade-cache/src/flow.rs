//! One request through the cache: look up, then serve, revalidate, coalesce or forward, and
//! store what the origin allows. The rules are the pure [`policy`](crate::policy); this is
//! the I/O around them.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use palisade_core::body::{BoxError, Collected, PrefixedBody, collect_within};
use tower_service::Service;

use crate::{
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

/// Nothing usable stored: one request per key goes to the origin; the others wait for it and
/// look again (served if it stored a response they can use, else they go themselves).
async fn miss<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
    asked: Asked,
    why: Forward,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: Store,
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError> + Send,
{
    let shared = &cache.inner;
    let mut collapsed = false;
    // Only plain requests lead or follow: the answer to a ranged or conditional one is not
    // the resource's.
    let flight = if asked.method == Method::GET && !is_conditional(&asked.headers) {
        match shared.flights.join(&asked.key) {
            Joined::Leader(flight) => Some(flight),
            Joined::Follower(done) => {
                shared.stats.record(Event::Coalesced);
                collapsed = true;
                if wait(done, shared.config.coalesce_wait).await {
                    if let Some(answer) = stored_answer(cache, &asked).await {
                        return Ok(answer);
                    }
                }
                None
            }
        }
    } else {
        None
    };
    // This process leads; on a shared store, another instance may already be fetching.
    let mut claim = None;
    if flight.is_some() {
        match shared
            .store
            .claim_fetch(&asked.key, shared.config.coalesce_wait)
            .await
        {
            Ok(Some(token)) => claim = Some(Claim::new(cache.store().clone(), &asked.key, token)),
            Ok(None) => {
                shared.stats.record(Event::Coalesced);
                collapsed = true;
                if let Some(answer) = wait_for_fleet(cache, &asked).await {
                    return Ok(answer);
                }
            }
            Err(error) => {
                tracing::debug!(target: "palisade::cache", %error, "could not claim the fetch; fetching anyway");
            }
        }
    }
    shared.stats.record(Event::Miss);
    let sent = shared.config.clock.now();
    let response = inner.call(request).await?;
    let mut status = CacheStatus::forward(why);
    status.collapsed = collapsed;
    let answer = store_response(cache, &asked, sent, response, status).await;
    // The response is stored (or known not storable): waiters here and elsewhere may look.
    drop(claim);
    drop(flight);
    Ok(answer)
}

/// A fetch claim on a shared store, given back when dropped — the response stored, or the
/// leader's future dropped mid-fetch — so other instances stop waiting at once.
struct Claim<St: Store> {
    store: St,
    key: String,
    token: String,
}

impl<St: Store> Claim<St> {
    fn new(store: St, key: &str, token: String) -> Self {
        Claim {
            store,
            key: key.to_owned(),
            token,
        }
    }
}

impl<St: Store> Drop for Claim<St> {
    fn drop(&mut self) {
        // A store private to the process hands out empty tokens: nothing to give back.
        if self.token.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move { store.release_fetch(&key, &token).await });
    }
}

/// Another instance is fetching `asked`: polls the store (10 ms, doubling to 100 ms) until its
/// response is there, its claim is gone, or the coalescing wait is over.
async fn wait_for_fleet<St: Store, B>(
    cache: &HttpCache<St>,
    asked: &Asked,
) -> Option<Response<PrefixedBody<B>>> {
    let shared = &cache.inner;
    let deadline = tokio::time::Instant::now() + shared.config.coalesce_wait;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        tokio::time::sleep(
            pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        if let Some(answer) = stored_answer(cache, asked).await {
            return Some(answer);
        }
        let claimed = shared
            .store
            .fetch_claimed(&asked.key)
            .await
            .unwrap_or(false);
        if !claimed || tokio::time::Instant::now() >= deadline {
            // Done (or gone) without a response this request may use: one last look.
            return stored_answer(cache, asked).await;
        }
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}

/// A follower's second look: the stored response the leader left, if it may serve this
/// request as it is.
async fn stored_answer<St: Store, B>(
    cache: &HttpCache<St>,
    asked: &Asked,
) -> Option<Response<PrefixedBody<B>>> {
    let shared = &cache.inner;
    let variants = shared
        .store
        .get(&asked.key, &shared.config.policy)
        .await
        .ok()?;
    let entry = variants
        .iter()
        .find(|e| e.selection().matches(&asked.headers))?;
    let decision = decide(&entry.view(), &asked.directives, shared.config.clock.now());
    if decision.reuse != Reuse::Serve {
        return None;
    }
    shared.stats.record(Event::Hit);
    let status = CacheStatus {
        hit: true,
        ttl: Some(decision.ttl),
        collapsed: true,
        ..Default::default()
    };
    let response = from_entry(entry, &asked.method, &asked.headers, decision.age, false);
    Some(mark(response, shared, &status))
}

/// A stored variant matches: serve it, serve it stale and revalidate behind, or revalidate
/// first (falling back to it on an origin failure within stale-if-error).
async fn from_stored<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
    asked: Asked,
    entry: Arc<Entry>,
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
    let now = shared.config.clock.now();
    let decision = decide(&entry.view(), &asked.directives, now);
    // Aged as of when it is sent: after a failed origin call, that is later than `now`.
    let serve_stored = |status: &CacheStatus| {
        let view = entry.view();
        let age = current_age(
            view.initial_age,
            view.response_time,
            shared.config.clock.now(),
        );
        let response = from_entry(&entry, &asked.method, &asked.headers, age, false);
        mark(response, shared, status)
    };
    let (why, stale_if_error) = match decision.reuse {
        Reuse::Serve => {
            shared.stats.record(Event::Hit);
            if decision.ttl < 0 {
                shared.stats.record(Event::StaleServed);
            }
            return Ok(serve_stored(&CacheStatus::hit(decision.ttl)));
        }
        Reuse::ServeStaleAndRevalidate => {
            shared.stats.record(Event::Hit);
            shared.stats.record(Event::StaleServed);
            revalidate_in_background(cache, inner, &request, &asked.key, &entry);
            return Ok(serve_stored(&CacheStatus::hit(decision.ttl)));
        }
        Reuse::Revalidate {
            why,
            stale_if_error,
        } => (why, stale_if_error),
    };
    if asked.directives.only_if_cached {
        let status = CacheStatus {
            detail: Some("only-if-cached"),
            ..Default::default()
        };
        return Ok(mark(only_if_cached(), shared, &status));
    }
    let fwd = match why {
        RevalidateWhy::Request => Forward::Request,
        RevalidateWhy::Stale | RevalidateWhy::NoCache => Forward::Stale,
    };
    // One revalidation per key at a time: when a popular response goes stale, the others wait
    // for it and are served what it freshened (a client's own `no-cache` asks for a
    // validation of its own, so it does not wait).
    let _flight = if asked.method == Method::GET
        && why != RevalidateWhy::Request
        && !is_conditional(&asked.headers)
    {
        match shared.flights.join(&asked.key) {
            Joined::Leader(flight) => Some(flight),
            Joined::Follower(done) => {
                shared.stats.record(Event::Coalesced);
                if wait(done, shared.config.coalesce_wait).await {
                    if let Some(answer) = stored_answer(cache, &asked).await {
                        return Ok(answer);
                    }
                }
                None
            }
        }
    } else {
        None
    };
    let staleness = u64::try_from(decision.ttl.saturating_neg()).unwrap_or(0);
    let disconnected_ok = decision.ttl < 0
        && !entry.policy().directives.forbids_stale()
        && staleness <= shared.config.stale_when_disconnected.as_secs();
    let conditional = has_validator(entry.headers());
    let (mut parts, body) = request.into_parts();
    if conditional {
        make_conditional(&mut parts.headers, entry.headers());
    }
    let sent = shared.config.clock.now();
    let stale_status = |fwd_status: Option<u16>, detail| CacheStatus {
        fwd: Some(fwd),
        fwd_status,
        ttl: Some(decision.ttl),
        detail,
        ..Default::default()
    };
    match inner.call(Request::from_parts(parts, body)).await {
        Ok(response)
            if conditional
                && response.status() == StatusCode::NOT_MODIFIED
                && validates(entry.headers(), response.headers()) =>
        {
            let (parts, _) = response.into_parts();
            let answer = freshen(cache, &asked, &entry, sent, &parts, fwd).await;
            Ok(answer)
        }
        // A 200 to a HEAD that matches the stored GET freshens it (RFC 9111 §4.3.5).
        Ok(response)
            if asked.method == Method::HEAD
                && response.status() == StatusCode::OK
                && head_validates(entry.headers(), response.headers()) =>
        {
            let (parts, _) = response.into_parts();
            Ok(freshen(cache, &asked, &entry, sent, &parts, fwd).await)
        }
        Ok(response) if stale_if_error && fails(response.status()) => {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(&stale_status(
                Some(response.status().as_u16()),
                Some("stale-if-error"),
            )))
        }
        Err(_) if stale_if_error => {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(&stale_status(None, Some("stale-if-error"))))
        }
        // The origin cannot be reached: a disconnected cache may serve stale unless the
        // response forbids it (RFC 9111 §4.2.4), within `stale_when_disconnected`.
        Ok(response)
            if response.extensions().get::<OriginUnreachable>().is_some() && disconnected_ok =>
        {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(&stale_status(
                Some(response.status().as_u16()),
                Some("disconnected"),
            )))
        }
        Err(_) if disconnected_ok => {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(&stale_status(None, Some("disconnected"))))
        }
        Err(error) => Err(error),
        Ok(response) => {
            Ok(store_response(cache, &asked, sent, response, CacheStatus::forward(fwd)).await)
        }
    }
}

/// Origin answers stale-if-error covers (RFC 5861 §4): 500, 502, 503, 504.
fn fails(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// A 304 (or a matching 200 to a HEAD) confirmed the stored response: store it freshened
/// and serve it.
async fn freshen<St: Store, B>(
    cache: &HttpCache<St>,
    asked: &Asked,
    entry: &Entry,
    sent: std::time::SystemTime,
    update: &http::response::Parts,
    fwd: Forward,
) -> Response<PrefixedBody<B>> {
    let shared = &cache.inner;
    let received = shared.config.clock.now();
    let fresh = entry.freshened(&update.headers, sent, received, &shared.config.policy);
    let decision = decide(&fresh.view(), &RequestDirectives::default(), received);
    shared.stats.record(Event::Revalidated);
    let mut status = CacheStatus {
        fwd: Some(fwd),
        fwd_status: Some(update.status.as_u16()),
        ttl: Some(decision.ttl),
        ..Default::default()
    };
    let response = from_entry(&fresh, &asked.method, &asked.headers, decision.age, true);
    match shared.store.put(&asked.key, Arc::new(fresh)).await {
        Ok(stored) => status.stored = stored,
        Err(error) => store_failed(cache, &error, &mut status),
    }
    mark(response, shared, &status)
}

fn store_failed<St>(
    cache: &HttpCache<St>,
    error: &palisade_core::BackendError,
    status: &mut CacheStatus,
) {
    tracing::warn!(target: "palisade::cache", %error, "could not store a response");
    cache.inner.stats.record(Event::StoreError);
    status.detail = Some("store-unavailable");
}

/// The origin's response to `asked`: stored when the rules allow it (read into memory up to
/// the size limit, then sent whole), streamed through otherwise.
async fn store_response<St, ResB>(
    cache: &HttpCache<St>,
    asked: &Asked,
    sent: std::time::SystemTime,
    response: Response<ResB>,
    mut status: CacheStatus,
) -> Response<PrefixedBody<ResB>>
where
    St: Store,
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError> + Send,
{
    let shared = &cache.inner;
    let config = &shared.config;
    status.fwd_status = Some(response.status().as_u16());
    let received = config.clock.now();
    let policy = response_policy(response.headers(), &config.policy);
    let verdict = if asked.method == Method::HEAD {
        Err(NotStorable::Method)
    } else if !config.store_set_cookie && response.headers().contains_key(header::SET_COOKIE) {
        Err(NotStorable::SetCookie)
    } else {
        storable(
            &asked.method,
            &asked.headers,
            &asked.directives,
            response.status(),
            response.headers(),
            &policy.directives,
            policy.targeted,
        )
    };
    if let Err(reason) = verdict {
        shared.stats.record(Event::NotStored);
        status.detail = Some(reason.label());
        return mark(response.map(PrefixedBody::streamed), shared, &status);
    }
    let (parts, body) = response.into_parts();
    let body = match collect_within(body, config.max_object_bytes).await {
        Collected::Complete { data, trailers } => {
            let entry = Entry::new(
                parts.status,
                parts.headers.clone(),
                data.clone(),
                sent,
                received,
                Selection::of(&parts.headers, &asked.headers),
                None,
                &config.policy,
            );
            status.ttl = Some(decide(&entry.view(), &RequestDirectives::default(), received).ttl);
            if entry.view().lifetime.is_zero() && !has_validator(entry.headers()) {
                // No freshness and nothing to revalidate with: stored, it could only ever be
                // served to a request accepting any staleness (`max-stale`) — someone else's
                // page, typically.
                shared.stats.record(Event::NotStored);
                status.detail = Some(NotStorable::NotReusable.label());
            } else {
                match shared.store.put(&asked.key, Arc::new(entry)).await {
                    Ok(true) => {
                        shared.stats.record(Event::Stored);
                        shared
                            .stats
                            .store_figures(shared.store.stored_bytes(), shared.store.evictions());
                        status.stored = true;
                    }
                    Ok(false) => {
                        shared.stats.record(Event::NotStored);
                        status.detail = Some("store-declined");
                    }
                    Err(error) => store_failed(cache, &error, &mut status),
                }
            }
            PrefixedBody::whole(data, trailers)
        }
        Collected::TooLarge { prefix, rest } => {
            shared.stats.record(Event::NotStored);
            status.detail = Some("too-large");
            PrefixedBody::prefixed(prefix, rest)
        }
        Collected::Failed { prefix, error } => {
            shared.stats.record(Event::NotStored);
            status.detail = Some("body-failed");
            PrefixedBody::failed(prefix, error)
        }
    };
    mark(Response::from_parts(parts, body), shared, &status)
}

/// Stale-while-revalidate: one background request per key refreshes the stored response
/// (conditionally when it has validators), on the service instance readied for this request
/// (it was readied by `poll_ready` and is called once, as tower asks).
fn revalidate_in_background<S, St, ReqB, ResB>(
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
async fn revalidate<S, St, ReqB, ResB>(
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

/// Unsafe methods go to the origin; a success invalidates what is stored for the target
/// URI and its same-origin `Location` / `Content-Location` (§4.4). A `POST` response that
/// names the target as its `Content-Location` and has explicit freshness is then stored as
/// the target's `GET` response (RFC 9110 §9.3.3).
async fn forward_unsafe<S, St, ReqB, ResB>(
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
