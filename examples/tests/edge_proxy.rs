//! The edge-proxy binary driven from outside: a scripted origin on a real socket, the proxy
//! process in front of it, its admin port beside it.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use common::{Instance, send};
use http::{Method, StatusCode};

/// Counts the requests that reached it, per path.
#[derive(Clone, Default)]
struct Origin {
    hits: Arc<AtomicUsize>,
}

async fn origin_handler(State(origin): State<Origin>, request: Request) -> Response {
    origin.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = |name: &str| {
        parts
            .headers
            .get(name)
            .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned())
    };
    let echo = format!(
        "{} {} x-custom={} via={} connection={} x-hop={} body={}",
        parts.method,
        parts.uri,
        seen("x-custom"),
        seen("via"),
        seen("connection"),
        seen("x-hop"),
        String::from_utf8_lossy(&body),
    );
    let path = parts.uri.path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cache_control = match path.as_str() {
        "/private" => "no-store",
        _ => "max-age=60",
    };
    let status = if parts.method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        [
            ("cache-control", cache_control),
            ("surrogate-key", "products all"),
            ("connection", "x-hop-response"),
            ("x-hop-response", "must not pass"),
        ],
        echo,
    )
        .into_response()
}

async fn start_origin() -> (String, Origin) {
    let origin = Origin::default();
    let app = Router::new()
        .fallback(origin_handler)
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), origin)
}

const EDGE_ENV: [&str; 7] = [
    "EDGE_REDIS_PREFIX",
    "EDGE_UPSTREAM",
    "EDGE_ADDR",
    "EDGE_ADMIN_ADDR",
    "EDGE_CACHE_MAX_BYTES",
    "EDGE_UPSTREAM_TIMEOUT",
    "REDIS_URL",
];

async fn proxy(upstream: &str) -> Instance {
    proxy_with(upstream, &[]).await
}

async fn proxy_with(upstream: &str, extra: &[(&str, String)]) -> Instance {
    let mut env = vec![
        ("EDGE_UPSTREAM", upstream.to_owned()),
        ("EDGE_ADDR", "127.0.0.1:0".into()),
        ("EDGE_ADMIN_ADDR", "127.0.0.1:0".into()),
    ];
    env.extend(extra.iter().cloned());
    Instance::spawn(
        env!("CARGO_BIN_EXE_edge-proxy"),
        &["edge-proxy listening on ", "edge-proxy admin on "],
        &EDGE_ENV,
        &env,
    )
    .await
}

fn admin(proxy: &Instance, path: &str) -> String {
    format!("{}{path}", proxy.announced[1])
}

fn cache_status(reply: &common::Reply) -> String {
    reply.headers["cache-status"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_methods_paths_queries_and_headers_and_caches_what_it_may() {
    let (upstream, origin) = start_origin().await;
    let proxy = proxy(&upstream).await;
    let headers = [
        ("x-custom", "kept"),
        ("connection", "x-hop"),
        ("x-hop", "dropped"),
    ];
    let first = send(Method::GET, &proxy.url("/items?a=1&b=%20x"), &headers, "").await;
    assert_eq!(first.status, StatusCode::OK);
    let body = String::from_utf8_lossy(&first.body).into_owned();
    assert!(
        body.starts_with("GET /items?a=1&b=%20x x-custom=kept"),
        "{body}"
    );
    assert!(body.contains("via=1.1 palisade-edge"), "Via added: {body}");
    assert!(
        body.contains("x-hop=-"),
        "fields named by Connection dropped: {body}"
    );
    assert!(
        !first.headers.contains_key("x-hop-response"),
        "nor on responses"
    );
    assert!(
        first.headers["via"]
            .to_str()
            .unwrap()
            .contains("palisade-edge")
    );
    assert!(
        cache_status(&first).contains("fwd=uri-miss"),
        "{}",
        cache_status(&first)
    );
    assert!(cache_status(&first).contains("stored"));

    let second = send(Method::GET, &proxy.url("/items?a=1&b=%20x"), &[], "").await;
    assert_eq!(second.body, first.body);
    assert!(
        cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    assert_eq!(origin.hits.load(Ordering::SeqCst), 1);

    // Another query is another resource; no-store is never reused; POST goes through.
    send(Method::GET, &proxy.url("/items?a=2"), &[], "").await;
    send(Method::GET, &proxy.url("/private"), &[], "").await;
    let private = send(Method::GET, &proxy.url("/private"), &[], "").await;
    assert!(cache_status(&private).contains("detail=no-store"));
    let posted = send(
        Method::POST,
        &proxy.url("/items?a=1&b=%20x"),
        &[],
        "payload",
    )
    .await;
    assert_eq!(posted.status, StatusCode::CREATED);
    assert!(String::from_utf8_lossy(&posted.body).ends_with("body=payload"));
    assert_eq!(origin.hits.load(Ordering::SeqCst), 5);
    // The POST invalidated the stored GET.
    let after = send(Method::GET, &proxy.url("/items?a=1&b=%20x"), &[], "").await;
    assert!(cache_status(&after).contains("fwd=uri-miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let (upstream, origin) = start_origin().await;
    let proxy = proxy(&upstream).await;
    let url = proxy.url("/slow");
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::GET, &url, &[], "").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(origin.hits.load(Ordering::SeqCst), 1);
}

/// Three instances on one Redis: one origin request for 100 concurrent misses spread across
/// them, and a purge on one seen by the others when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_share_storage_coalescing_and_purges() {
    let redis = palisade_testkit::TestRedis::connect().await;
    let (upstream, origin) = start_origin().await;
    let shared = [
        ("REDIS_URL", palisade_testkit::redis_url()),
        ("EDGE_REDIS_PREFIX", redis.prefix.clone()),
    ];
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(proxy_with(&upstream, &shared).await);
    }
    // Behind a load balancer every instance sees the same Host: the cache key is the URI.
    let host = [("host", "shop.example")];
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let url = fleet[i % 3].url("/slow");
            tokio::spawn(async move { send(Method::GET, &url, &host, "").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(
        origin.hits.load(Ordering::SeqCst),
        1,
        "one origin request for the fleet"
    );
    for instance in &fleet {
        let hit = send(Method::GET, &instance.url("/slow"), &host, "").await;
        assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    }
    // Purged on the first instance: the others miss at once.
    let purge = r#"{"surrogate_key": "products"}"#;
    let purged = send(Method::POST, &admin(&fleet[0], "/purge"), &[], purge).await;
    assert_eq!(purged.status, StatusCode::OK);
    let stats = send(Method::GET, &admin(&fleet[1], "/stats"), &[], "")
        .await
        .json();
    assert_eq!(stats["store"]["kind"], "redis");
    let after = send(Method::GET, &fleet[2].url("/slow"), &host, "").await;
    assert!(
        cache_status(&after).contains("fwd=uri-miss"),
        "{}",
        cache_status(&after)
    );
    assert_eq!(origin.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_purges_and_reports() {
    let (upstream, origin) = start_origin().await;
    let proxy = proxy(&upstream).await;
    let health = send(Method::GET, &admin(&proxy, "/health"), &[], "").await;
    assert_eq!(health.json()["status"], "ok");
    send(Method::GET, &proxy.url("/a"), &[], "").await;
    send(Method::GET, &proxy.url("/b"), &[], "").await;

    let url = proxy.url("/a");
    let purge = format!(r#"{{"url": "{url}"}}"#);
    let purged = send(Method::POST, &admin(&proxy, "/purge"), &[], purge).await;
    assert_eq!(purged.json()["purged"], 1, "{:?}", purged.json());
    let again = send(Method::GET, &proxy.url("/a"), &[], "").await;
    assert!(cache_status(&again).contains("fwd=uri-miss"));

    let soft = r#"{"surrogate_key": "products", "soft": true}"#;
    let purged = send(Method::POST, &admin(&proxy, "/purge"), &[], soft).await;
    assert_eq!(purged.json()["purged"], 2);
    let revalidated = send(Method::GET, &proxy.url("/b"), &[], "").await;
    assert!(
        cache_status(&revalidated).contains("fwd=stale"),
        "{}",
        cache_status(&revalidated)
    );

    let stats = send(Method::GET, &admin(&proxy, "/stats"), &[], "")
        .await
        .json();
    assert_eq!(stats["cache"]["purges"], 2);
    assert_eq!(stats["store"]["uris"], 2);
    assert_eq!(origin.hits.load(Ordering::SeqCst), 4);

    for bad in [
        "",
        "{",
        r#"{"url": "/relative"}"#,
        r#"{"url": "x", "surrogate_key": "y"}"#,
        r#"{"nope": 1}"#,
    ] {
        let refused = send(Method::POST, &admin(&proxy, "/purge"), &[], bad).await;
        refused.assert_problem(400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_is_502_problem_json() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = proxy(&upstream).await;
    let reply = send(Method::GET, &proxy.url("/x"), &[], "").await;
    reply.assert_problem(502);
}

#[tokio::test]
async fn bad_settings_exit_with_a_clear_message() {
    for (env, message) in [
        (vec![], "EDGE_UPSTREAM is required"),
        (vec![("EDGE_UPSTREAM", "ftp://x")], "must be an http:// URL"),
        (
            vec![
                ("EDGE_UPSTREAM", "http://127.0.0.1:1"),
                ("EDGE_CACHE_MAX_BYTES", "lots"),
            ],
            "EDGE_CACHE_MAX_BYTES",
        ),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-proxy"));
        for name in EDGE_ENV {
            command.env_remove(name);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}
