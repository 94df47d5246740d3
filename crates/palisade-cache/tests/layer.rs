//! `CacheLayer` end to end over a scripted origin, under paused time: coalescing, stale
//! windows, revalidation, purge, invalidation, bounds and a failing store.

mod common;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use common::{Origin, cache_status, get, send, settle};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use palisade_cache::{
    Clock, Entry, HttpCache, MemoryStore, PurgeMode, Store, policy::PolicyConfig,
};
use palisade_core::BackendError;
use tower::Layer;

fn cache() -> HttpCache<MemoryStore> {
    HttpCache::new(MemoryStore::new(1 << 20))
        .name("t")
        .clock(Clock::tokio())
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_misses_make_one_origin_request() {
    let (origin, gate) = Origin::new(200, &[("cache-control", "max-age=60")], "once").gated();
    let svc = cache().layer().layer(origin.clone());
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc, get("/hot")).await })
        })
        .collect();
    settle().await;
    assert_eq!(origin.calls(), 1, "one leader went to the origin");
    gate.add_permits(1);
    let mut collapsed = 0;
    for call in calls {
        let (status, headers, body) = call.await.unwrap();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"once"[..]));
        collapsed += usize::from(cache_status(&headers).contains("collapsed"));
    }
    assert_eq!(
        origin.calls(),
        1,
        "every follower was served what the leader stored"
    );
    assert_eq!(collapsed, 999);
}

#[tokio::test(start_paused = true)]
async fn an_uncacheable_response_releases_the_waiters_to_the_origin() {
    let (origin, gate) = Origin::new(200, &[("cache-control", "no-store")], "private").gated();
    let svc = cache().layer().layer(origin.clone());
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc, get("/u")).await })
        })
        .collect();
    settle().await;
    assert_eq!(origin.calls(), 1);
    gate.add_permits(100);
    for call in calls {
        assert_eq!(call.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(
        origin.calls(),
        10,
        "nothing stored: each waiter asked for itself"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_releases_its_followers() {
    let (origin, gate) = Origin::new(200, &[("cache-control", "max-age=60")], "x").gated();
    let svc = cache().layer().layer(origin.clone());
    let leader = {
        let svc = svc.clone();
        tokio::spawn(async move { send(&svc, get("/c")).await })
    };
    settle().await;
    let follower = {
        let svc = svc.clone();
        tokio::spawn(async move { send(&svc, get("/c")).await })
    };
    settle().await;
    leader.abort();
    settle().await;
    assert_eq!(
        origin.calls(),
        2,
        "the follower went itself once the leader was gone"
    );
    gate.add_permits(1);
    assert_eq!(follower.await.unwrap().0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_at_once_and_revalidates_once_behind() {
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=1, stale-while-revalidate=60"),
            ("etag", "\"v1\""),
        ],
        "v1",
    );
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/swr")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.answer(
        304,
        &[
            ("cache-control", "max-age=100, stale-while-revalidate=60"),
            ("etag", "\"v1\""),
        ],
        "",
    );
    for _ in 0..5 {
        let (status, headers, body) = send(&svc, get("/swr")).await;
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"v1"[..]));
        assert!(cache_status(&headers).contains("hit; ttl=-"), "{headers:?}");
    }
    settle().await;
    assert_eq!(
        origin.calls(),
        2,
        "one background revalidation for five stale hits"
    );
    assert_eq!(origin.last_seen()["if-none-match"], "\"v1\"");
    let (_, headers, _) = send(&svc, get("/swr")).await;
    assert!(
        cache_status(&headers).contains("hit; ttl=9"),
        "freshened by the 304: {headers:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_stored_response_when_the_origin_fails() {
    let origin = Origin::new(
        200,
        &[("cache-control", "max-age=1, stale-if-error=60")],
        "kept",
    );
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/sie")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.answer(503, &[], "down");
    let (status, headers, body) = send(&svc, get("/sie")).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"kept"[..]));
    assert!(cache_status(&headers).contains("fwd-status=503"));
    origin.fail();
    let (status, _, body) = send(&svc, get("/sie")).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"kept"[..]));
    // Past the window, the failure goes through.
    tokio::time::advance(Duration::from_secs(120)).await;
    origin.answer(503, &[], "down");
    assert_eq!(
        send(&svc, get("/sie")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn must_revalidate_is_never_served_stale() {
    let origin = Origin::new(
        200,
        &[(
            "cache-control",
            "max-age=1, must-revalidate, stale-if-error=60, stale-while-revalidate=60",
        )],
        "strict",
    );
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/mr")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.answer(503, &[], "down");
    assert_eq!(
        send(&svc, get("/mr")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn purges_by_url_and_surrogate_key_soft_and_hard() {
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60, stale-while-revalidate=60"),
            ("surrogate-key", "a b"),
        ],
        "tagged",
    );
    let cache = cache();
    let svc = cache.layer().layer(origin.clone());
    send(&svc, get("/p")).await;
    // Soft: stale now, so stale-while-revalidate answers at once and refreshes behind.
    assert_eq!(
        cache
            .purge_surrogate_key("b", PurgeMode::Soft)
            .await
            .unwrap(),
        Some(1)
    );
    let (_, headers, _) = send(&svc, get("/p")).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    settle().await;
    assert_eq!(
        origin.calls(),
        2,
        "the soft-purged response was revalidated"
    );
    // Hard: gone.
    let url = "http://example.com/p".parse().unwrap();
    assert_eq!(
        cache.purge_url(&url, PurgeMode::Hard).await.unwrap(),
        Some(1)
    );
    let (_, headers, _) = send(&svc, get("/p")).await;
    assert!(
        cache_status(&headers).contains("fwd=uri-miss"),
        "{headers:?}"
    );
    assert_eq!(cache.purge_all(PurgeMode::Hard).await.unwrap(), Some(1));
    assert_eq!(
        cache
            .purge_surrogate_key("nothing", PurgeMode::Hard)
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_successful_unsafe_method_invalidates_the_target() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "v1");
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/r")).await;
    assert!(cache_status(&send(&svc, get("/r")).await.1).contains("hit"));
    origin.answer(201, &[], "");
    let post = Request::builder()
        .method(Method::POST)
        .uri("http://example.com/r")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&svc, post).await.0, StatusCode::CREATED);
    origin.answer(200, &[("cache-control", "max-age=60")], "v2");
    let (_, headers, body) = send(&svc, get("/r")).await;
    assert_eq!(body.as_ref(), b"v2");
    assert!(cache_status(&headers).contains("fwd=uri-miss"));
}

#[tokio::test(start_paused = true)]
async fn a_response_over_the_size_limit_streams_through_uncached() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "0123456789abcdef");
    let svc = cache().max_object_size(8).layer().layer(origin.clone());
    for _ in 0..2 {
        let (_, headers, body) = send(&svc, get("/big")).await;
        assert_eq!(
            body.as_ref(),
            b"0123456789abcdef",
            "whole, though not stored"
        );
        assert!(cache_status(&headers).contains("detail=too-large"));
    }
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn only_if_cached_with_nothing_stored_is_504_problem_json() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "x");
    let svc = cache().layer().layer(origin.clone());
    let request = Request::get("http://example.com/o")
        .header("cache-control", "only-if-cached")
        .body(Full::default())
        .unwrap();
    let (status, headers, _) = send(&svc, request).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(origin.calls(), 0);
}

/// A store whose backend is down: every operation fails.
#[derive(Clone)]
struct DownStore;

impl Store for DownStore {
    async fn get(&self, _: &str, _: &PolicyConfig) -> Result<Vec<Arc<Entry>>, BackendError> {
        Err(BackendError::Timeout(Duration::from_millis(50)))
    }
    async fn put(&self, _: &str, _: Arc<Entry>) -> Result<bool, BackendError> {
        Err(BackendError::Timeout(Duration::from_millis(50)))
    }
    async fn purge_key(
        &self,
        _: &str,
        _: PurgeMode,
        _: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        Err(BackendError::Timeout(Duration::from_millis(50)))
    }
    async fn purge_surrogate_key(
        &self,
        _: &str,
        _: PurgeMode,
        _: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        Err(BackendError::Timeout(Duration::from_millis(50)))
    }
    async fn purge_all(&self, _: PurgeMode, _: SystemTime) -> Result<Option<usize>, BackendError> {
        Err(BackendError::Timeout(Duration::from_millis(50)))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_makes_the_cache_a_pass_through() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "through");
    let cache = HttpCache::new(DownStore).clock(Clock::tokio());
    let svc = cache.layer().layer(origin.clone());
    for _ in 0..3 {
        let (status, headers, body) = send(&svc, get("/d")).await;
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"through"[..]));
        assert!(cache_status(&headers).contains("detail=store-unavailable"));
    }
    assert_eq!(origin.calls(), 3);
    assert_eq!(cache.stats().store_errors, 3);
}

#[tokio::test(start_paused = true)]
async fn a_head_is_served_from_the_stored_get_and_a_range_from_the_whole() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "0123456789");
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/h")).await;
    let head = Request::head("http://example.com/h")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&svc, head).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert!(cache_status(&headers).contains("hit"));
    let range = Request::get("http://example.com/h")
        .header("range", "bytes=2-4")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&svc, range).await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &b"234"[..])
    );
    assert_eq!(headers["content-range"], "bytes 2-4/10");
    assert_eq!(origin.calls(), 1);
}

/// Regression (review): a 416 answering a hostile `Range` was stored as *the* response for
/// the URL (the origin sent its usual `max-age`), and every plain request got 416.
#[tokio::test(start_paused = true)]
async fn an_error_answering_a_range_or_precondition_is_never_stored() {
    let origin = Origin::new(416, &[("cache-control", "public, max-age=300")], "");
    let svc = cache().layer().layer(origin.clone());
    let ranged = Request::get("http://example.com/app.js")
        .header("range", "bytes=999999999-")
        .body(Full::default())
        .unwrap();
    let (status, headers, _) = send(&svc, ranged).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(
        cache_status(&headers).contains("detail=conditional"),
        "{headers:?}"
    );
    origin.answer(200, &[("cache-control", "public, max-age=300")], "js");
    let (status, _, body) = send(&svc, get("/app.js")).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"js"[..]));
}

/// Regression (review): a page with no caching headers and no validator was stored (200 is
/// heuristically cacheable) with a zero lifetime — and `Cache-Control: max-stale` got the
/// last visitor's page.
#[tokio::test(start_paused = true)]
async fn a_response_with_no_freshness_and_no_validator_is_never_reused() {
    let origin = Origin::new(200, &[], "alice's account");
    let svc = cache().layer().layer(origin.clone());
    let (_, headers, _) = send(&svc, get("/account")).await;
    assert!(
        cache_status(&headers).contains("detail=not-reusable"),
        "{headers:?}"
    );
    origin.answer(200, &[], "bob's account");
    let stale_ok = Request::get("http://example.com/account")
        .header("cache-control", "max-stale")
        .body(Full::default())
        .unwrap();
    let (_, _, body) = send(&svc, stale_ok).await;
    assert_eq!(body.as_ref(), b"bob's account");
    assert_eq!(origin.calls(), 2);
}

/// Regression (review): an `Age` near `u64::MAX` made every later lookup of the URL panic
/// (Duration overflow).
#[tokio::test(start_paused = true)]
async fn a_hostile_age_is_capped_not_a_panic() {
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("age", "18446744073709551615"),
        ],
        "old",
    );
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/age")).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let (status, headers, _) = send(&svc, get("/age")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache_status(&headers).contains("fwd=stale"),
        "as old as 2^31 s: {headers:?}"
    );
}

/// A request whose target has no host and whose `Host` is not an authority is not cached:
/// the cache cannot tell whose resource it is.
#[tokio::test(start_paused = true)]
async fn a_request_without_a_valid_host_bypasses_the_cache() {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "x");
    let svc = cache().layer().layer(origin.clone());
    for _ in 0..2 {
        let request = Request::get("/b")
            .header("host", "victim.example/a")
            .body(Full::default())
            .unwrap();
        let (_, headers, _) = send(&svc, request).await;
        assert!(cache_status(&headers).contains("fwd=bypass"), "{headers:?}");
    }
    assert_eq!(origin.calls(), 2);
}

/// Regression (review): when a popular response went stale (no stale-while-revalidate), every
/// concurrent request revalidated it at the origin.
#[tokio::test(start_paused = true)]
async fn concurrent_revalidations_of_a_stale_response_make_one_origin_request() {
    let (origin, gate) = Origin::new(
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"1\"")],
        "v",
    )
    .gated();
    gate.add_permits(1);
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/popular")).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    origin.answer(
        304,
        &[("cache-control", "max-age=60"), ("etag", "\"1\"")],
        "",
    );
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc, get("/popular")).await })
        })
        .collect();
    settle().await;
    assert_eq!(origin.calls(), 2, "one revalidation in flight");
    gate.add_permits(1);
    for call in calls {
        let (status, _, body) = call.await.unwrap();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"v"[..]));
    }
    assert_eq!(
        origin.calls(),
        2,
        "the others were served what it freshened"
    );
}

/// Regression (review): a fetch in flight when a purge ran stored the purged response back
/// (memory store), served as fresh.
#[tokio::test(start_paused = true)]
async fn a_fetch_in_flight_during_a_purge_does_not_bring_the_old_response_back() {
    for soft in [false, true] {
        let (origin, gate) = Origin::new(
            200,
            &[("cache-control", "max-age=60"), ("surrogate-key", "t")],
            "old",
        )
        .gated();
        let cache = cache();
        let svc = cache.layer().layer(origin.clone());
        let in_flight = {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc, get("/f")).await })
        };
        settle().await;
        tokio::time::advance(Duration::from_millis(5)).await;
        let mode = if soft {
            PurgeMode::Soft
        } else {
            PurgeMode::Hard
        };
        cache.purge_surrogate_key("t", mode).await.unwrap();
        gate.add_permits(1);
        assert_eq!(in_flight.await.unwrap().2.as_ref(), b"old");
        origin.answer(200, &[("cache-control", "max-age=60")], "new");
        gate.add_permits(10);
        let (_, headers, body) = send(&svc, get("/f")).await;
        if soft {
            // Stored, but stale from the purge: revalidated (the origin has "new" now).
            assert!(!cache_status(&headers).contains("hit"), "{headers:?}");
        }
        assert_eq!(body.as_ref(), b"new", "soft={soft}: {headers:?}");
    }
}

/// RFC 9111 §4.2.4: a cache that cannot reach the origin may serve a stale response unless
/// the response forbids it — an origin error, or the proxy's own "unreachable" answer.
#[tokio::test(start_paused = true)]
async fn a_disconnected_cache_serves_stale_unless_forbidden() {
    let origin = Origin::new(200, &[("cache-control", "max-age=1")], "kept");
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/d")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.fail();
    let (status, headers, body) = send(&svc, get("/d")).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"kept"[..]));
    assert!(
        cache_status(&headers).contains("detail=disconnected"),
        "{headers:?}"
    );

    // must-revalidate forbids it: the error goes through.
    let strict = Origin::new(
        200,
        &[("cache-control", "max-age=1, must-revalidate")],
        "strict",
    );
    let svc = cache().layer().layer(strict.clone());
    send(&svc, get("/s")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    strict.fail();
    assert!(tower::ServiceExt::oneshot(svc, get("/s")).await.is_err());

    // Switched off: only stale-if-error serves stale.
    let origin = Origin::new(200, &[("cache-control", "max-age=1")], "kept");
    let svc = cache()
        .stale_when_disconnected(Duration::ZERO)
        .layer()
        .layer(origin.clone());
    send(&svc, get("/z")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.fail();
    assert!(tower::ServiceExt::oneshot(svc, get("/z")).await.is_err());
}

/// RFC 9111 §4.3.5: a 200 to a HEAD whose validators match the stored GET freshens it.
#[tokio::test(start_paused = true)]
async fn a_matching_head_response_freshens_the_stored_get() {
    let origin = Origin::new(
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
        "body",
    );
    let cache = cache();
    let svc = cache.layer().layer(origin.clone());
    send(&svc, get("/h")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    origin.answer(
        200,
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "body",
    );
    let head = Request::head("http://example.com/h")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&svc, head).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert!(cache_status(&headers).contains("stored"), "{headers:?}");
    let (_, headers, body) = send(&svc, get("/h")).await;
    assert_eq!(body.as_ref(), b"body");
    assert!(
        cache_status(&headers).contains("hit"),
        "freshened by the HEAD: {headers:?}"
    );
    assert_eq!(origin.calls(), 2);
    let stats = cache.stats();
    assert!(stats.stored_bytes.is_some_and(|b| b > 0), "{stats:?}");
    assert_eq!(stats.evictions, Some(0));
}

/// `Set-Cookie` responses are stored as RFC 9111 allows — unless the cache is told not to.
#[tokio::test(start_paused = true)]
async fn set_cookie_responses_are_kept_out_when_asked() {
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=alice"),
        ],
        "page",
    );
    let svc = cache()
        .store_set_cookie(false)
        .layer()
        .layer(origin.clone());
    for _ in 0..2 {
        let (_, headers, _) = send(&svc, get("/c")).await;
        assert!(
            cache_status(&headers).contains("detail=set-cookie"),
            "{headers:?}"
        );
    }
    assert_eq!(origin.calls(), 2);
    let svc = cache().layer().layer(origin.clone());
    send(&svc, get("/c")).await;
    let (_, headers, _) = send(&svc, get("/c")).await;
    assert_eq!(
        headers["set-cookie"], "session=alice",
        "replayed, by default, as the RFC allows"
    );
}

/// Regression (review, measured: 11 ms per request in the bench): the leader gave its fetch
/// claim back in the background, so the next miss for the key in the same process found it
/// still held and waited a polling interval as a "collapsed" follower.
#[tokio::test(start_paused = true)]
async fn sequential_misses_do_not_wait_for_their_own_claim() {
    let origin = Origin::new(200, &[("cache-control", "no-store")], "fresh each time");
    let cache = cache();
    let svc = cache.layer().layer(origin.clone());
    for _ in 0..3 {
        let (_, headers, _) = send(&svc, get("/uncacheable")).await;
        assert!(!cache_status(&headers).contains("collapsed"), "{headers:?}");
    }
    assert_eq!(cache.stats().coalesced, 0);
}
