//! Storing the origin's response when the rules allow it: read into memory up to the size
//! limit, then sent whole; streamed through otherwise.

use super::{Asked, prelude::*};

pub(super) fn store_failed<St>(
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
pub(super) async fn store_response<St, ResB>(
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
