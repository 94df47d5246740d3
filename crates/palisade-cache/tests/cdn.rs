//! `CdnHeadersLayer` on a service's own responses.

use std::{convert::Infallible, time::Duration};

use http::{Request, Response, StatusCode};
use palisade_cache::{CdnHeadersLayer, CdnPolicy};
use tower::{Layer, ServiceExt};

async fn stamped(
    policy: CdnPolicy,
    status: u16,
    preset: &[(&'static str, &'static str)],
) -> Response<()> {
    let preset: Vec<_> = preset.to_vec();
    let svc = CdnHeadersLayer::new(policy)
        .unwrap()
        .layer(tower::service_fn(move |_: Request<()>| {
            let preset = preset.clone();
            async move {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (k, v) in preset {
                    response.headers_mut().append(k, v.parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            }
        }));
    svc.oneshot(Request::new(())).await.unwrap()
}

fn catalog() -> CdnPolicy {
    CdnPolicy {
        max_age: Some(Duration::from_secs(60)),
        cdn_max_age: Some(Duration::from_secs(3600)),
        surrogate_keys: vec!["catalog".into(), "item-7".into()],
        vary: vec!["Accept-Encoding".into(), "accept-language".into()],
        ..CdnPolicy::default()
    }
}

#[tokio::test]
async fn stamps_success_keeps_what_the_handler_set_and_merges_vary() {
    let r = stamped(catalog(), 200, &[("vary", "accept-encoding")]).await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    assert_eq!(r.headers()["cdn-cache-control"], "max-age=3600");
    assert_eq!(r.headers()["surrogate-key"], "catalog item-7");
    let vary: Vec<_> = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(vary, ["accept-encoding", "accept-language"]);
}

/// Regression (review): a handler answering `Cache-Control: private` for a logged-in user got
/// the route's `CDN-Cache-Control: max-age=3600` added — and CDNs obey that one, so the page
/// was shared.
#[tokio::test]
async fn a_handlers_own_cache_control_keeps_the_cdn_directive_off() {
    let r = stamped(catalog(), 200, &[("cache-control", "private")]).await;
    assert_eq!(
        r.headers()["cache-control"],
        "private",
        "the handler's own choice wins"
    );
    assert!(
        !r.headers().contains_key("cdn-cache-control"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.headers()["surrogate-key"], "catalog item-7");
}

#[tokio::test]
async fn overwrite_replaces_and_errors_are_left_alone() {
    let policy = CdnPolicy {
        overwrite: true,
        ..catalog()
    };
    let r = stamped(policy.clone(), 200, &[("cache-control", "no-cache")]).await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let r = stamped(policy.clone(), 503, &[]).await;
    assert!(
        !r.headers().contains_key("cache-control"),
        "an error page is not made cacheable"
    );
    let r = stamped(
        CdnPolicy {
            errors_too: true,
            ..policy
        },
        404,
        &[],
    )
    .await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
}

#[test]
fn a_bad_policy_fails_at_start_up() {
    let bad = CdnPolicy {
        vary: vec!["not a header".into()],
        ..CdnPolicy::default()
    };
    assert!(CdnHeadersLayer::new(bad).is_err());
}
