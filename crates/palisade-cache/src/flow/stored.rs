//! A stored variant matches: serve it, serve it stale and revalidate behind, or revalidate
//! first — freshened by a 304, replaced by a new response, or served stale on failure.

use super::{
    Answer, Asked,
    background::revalidate_in_background,
    miss::stored_answer,
    prelude::*,
    storing::{store_failed, store_response},
};

/// A stored variant matches: serve it, serve it stale and revalidate behind, or revalidate
/// first (falling back to it on an origin failure within stale-if-error).
pub(super) async fn from_stored<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
    directives: RequestDirectives,
    key: String,
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
    let decision = decide(&entry.view(), &directives, now);
    let method = request.method().clone();
    // Aged as of when it is sent: after a failed origin call, that is later than `now`.
    let serve_stored = |headers: &HeaderMap, status: &CacheStatus| {
        let view = entry.view();
        let age = current_age(
            view.initial_age,
            view.response_time,
            shared.config.clock.now(),
        );
        let response = from_entry(&entry, &method, headers, age, false);
        mark(response, shared, status)
    };
    let (why, stale_if_error) = match decision.reuse {
        Reuse::Serve => {
            shared.stats.record(Event::Hit);
            if decision.ttl < 0 {
                shared.stats.record(Event::StaleServed);
            }
            return Ok(serve_stored(
                request.headers(),
                &CacheStatus::hit(decision.ttl),
            ));
        }
        Reuse::ServeStaleAndRevalidate => {
            shared.stats.record(Event::Hit);
            shared.stats.record(Event::StaleServed);
            revalidate_in_background(cache, inner, &request, &key, &entry);
            return Ok(serve_stored(
                request.headers(),
                &CacheStatus::hit(decision.ttl),
            ));
        }
        Reuse::Revalidate {
            why,
            stale_if_error,
        } => (why, stale_if_error),
    };
    if directives.only_if_cached {
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
    // Going to the origin: the request's fields are needed after it is sent (only here — a
    // hit does not copy them).
    let (mut parts, body) = request.into_parts();
    let asked = Asked {
        method: method.clone(),
        headers: parts.headers.clone(),
        directives,
        key,
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
            Ok(serve_stored(
                &asked.headers,
                &stale_status(Some(response.status().as_u16()), Some("stale-if-error")),
            ))
        }
        Err(_) if stale_if_error => {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(
                &asked.headers,
                &stale_status(None, Some("stale-if-error")),
            ))
        }
        // The origin cannot be reached: a disconnected cache may serve stale unless the
        // response forbids it (RFC 9111 §4.2.4), within `stale_when_disconnected`.
        Ok(response)
            if response.extensions().get::<OriginUnreachable>().is_some() && disconnected_ok =>
        {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(
                &asked.headers,
                &stale_status(Some(response.status().as_u16()), Some("disconnected")),
            ))
        }
        Err(_) if disconnected_ok => {
            shared.stats.record(Event::StaleServed);
            Ok(serve_stored(
                &asked.headers,
                &stale_status(None, Some("disconnected")),
            ))
        }
        Err(error) => Err(error),
        Ok(response) => {
            Ok(store_response(cache, &asked, sent, response, CacheStatus::forward(fwd)).await)
        }
    }
}

/// Origin answers stale-if-error covers (RFC 5861 §4): 500, 502, 503, 504.
pub(super) fn fails(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// A 304 (or a matching 200 to a HEAD) confirmed the stored response: store it freshened
/// and serve it.
pub(super) async fn freshen<St: Store, B>(
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
