//! The layer in an axum app: in process, over a real socket, and as a gRPC service.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    routing::{get, post},
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use palisade_core::{
    OnBackendError,
    key::{ClientIp, Header, PeerAddr, RequestHead},
    responder::Grpc,
};
use palisade_ratelimit::{
    Gcra, MemoryStore, Policy, RateLimitLayer, RedisStore, Tiers, TokenBucket,
};
use palisade_testkit::{RedisNode, TestRedis};
use serde_json::Value;
use tower::{Service, ServiceExt};

fn bucket(name: &str, capacity: u64) -> Policy {
    Policy::new(name, TokenBucket::new(capacity, 0.001).unwrap()).unwrap()
}

fn get_from(peer: &str, uri: &str) -> Request<Body> {
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    req
}

async fn send(app: &mut Router, req: Request<Body>) -> Response<Body> {
    app.as_service()
        .ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

async fn json(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers()))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn allowed_and_rejected_responses_carry_the_fields() {
    let mut app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(MemoryStore::new(), bucket("api", 3)));

    for remaining in [2, 1, 0] {
        let r = send(&mut app, get_from("192.0.2.1:1000", "/")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "ratelimit-policy"), "\"api\";q=3;w=3000");
        assert!(header(&r, "ratelimit").starts_with(&format!("\"api\";r={remaining};t=")));
        assert!(r.headers().get("retry-after").is_none());
    }
    let r = send(&mut app, get_from("192.0.2.1:1000", "/")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let retry_after: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        header(&r, "ratelimit"),
        format!("\"api\";r=0;t={retry_after}")
    );
    let body = json(r).await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry_after"], retry_after);
    assert_eq!(body["violated-policies"], serde_json::json!(["api"]));

    // Another client is not affected.
    let r = send(&mut app, get_from("192.0.2.2:1000", "/")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn retry_after_is_rounded_up_never_zero_and_legacy_headers_on_request() {
    // One token, refilled every millisecond: the wait is well under a second.
    let policy = Policy::new("fast", TokenBucket::new(1, 1000.0).unwrap()).unwrap();
    let mut app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder(MemoryStore::new(), policy)
            .legacy_headers(true)
            .build(),
    );
    let r = send(&mut app, get_from("192.0.2.1:1", "/")).await;
    assert_eq!(header(&r, "x-ratelimit-limit"), "1");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let r = send(&mut app, get_from("192.0.2.1:1", "/")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let reset: u64 = header(&r, "x-ratelimit-reset").parse().unwrap();
    assert!(
        reset > 1_700_000_000,
        "X-RateLimit-Reset is a Unix time: {reset}"
    );
}

#[tokio::test]
async fn per_route_policies() {
    let store = MemoryStore::new();
    let mut app = Router::new()
        .route(
            "/login",
            post(|| async { "welcome" })
                .route_layer(RateLimitLayer::new(store.clone(), bucket("login", 2))),
        )
        .route(
            "/items",
            get(|| async { "items" })
                .route_layer(RateLimitLayer::new(store.clone(), bucket("items", 5))),
        )
        .route("/health", get(|| async { "up" }));
    let login = || {
        let mut req = Request::post("/login").body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.9:1".parse().unwrap()));
        req
    };
    for _ in 0..2 {
        assert_eq!(send(&mut app, login()).await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&mut app, login()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other routes keep their own quota, and unlimited routes stay unlimited.
    let r = send(&mut app, get_from("192.0.2.9:1", "/items")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "ratelimit").starts_with("\"items\";r=4"));
    for _ in 0..10 {
        let r = send(&mut app, get_from("192.0.2.9:1", "/health")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn per_tier_policies_and_cost_per_request() {
    let per_minute =
        |name: &str, n| Policy::new(name, Gcra::new(n, Duration::from_secs(60)).unwrap()).unwrap();
    let tiers = Tiers::new(per_minute("anonymous", 2))
        .tier("free", per_minute("free", 5))
        .tier("pro", per_minute("pro", 50))
        .select_by(|req: &RequestHead<'_>| req.headers.get("x-plan")?.to_str().ok());
    let mut app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/bulk", get(|| async { "bulk" }))
        .layer(
            RateLimitLayer::builder(MemoryStore::new(), tiers)
                .key(Header::new("x-api-key"))
                .cost(|req| if req.uri.path() == "/bulk" { 10 } else { 1 })
                .build(),
        );
    let req = |plan: Option<&str>, key: &str, path: &str| {
        let mut b = Request::get(path).header("x-api-key", key);
        if let Some(plan) = plan {
            b = b.header("x-plan", plan);
        }
        b.body(Body::empty()).unwrap()
    };
    let r = send(&mut app, req(Some("pro"), "k1", "/bulk")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "ratelimit").starts_with("\"pro\";r=40"));
    let r = send(&mut app, req(Some("free"), "k2", "/bulk")).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a cost of 10 never fits 5"
    );
    assert!(
        r.headers().get("retry-after").is_none(),
        "no retry can succeed"
    );
    let r = send(&mut app, req(Some("unknown-plan"), "k3", "/")).await;
    assert!(header(&r, "ratelimit-policy").starts_with("\"anonymous\""));
    let r = send(&mut app, req(None, "k3", "/")).await;
    assert!(header(&r, "ratelimit").starts_with("\"anonymous\";r=0"));
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let mut app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder(MemoryStore::new(), bucket("api", 2))
            .key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]))
            .build(),
    );
    let spoofed = |n: u32| {
        let mut req = get_from("203.0.113.50:1", "/");
        req.headers_mut().insert(
            "x-forwarded-for",
            HeaderValue::from_str(&format!("198.51.100.{n}")).unwrap(),
        );
        req
    };
    assert_eq!(send(&mut app, spoofed(1)).await.status(), StatusCode::OK);
    assert_eq!(send(&mut app, spoofed(2)).await.status(), StatusCode::OK);
    assert_eq!(
        send(&mut app, spoofed(3)).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a new X-Forwarded-For must not buy a new quota"
    );
    // Through the trusted proxy, each forwarded client has its own quota.
    for n in 1..=5 {
        let mut req = get_from("10.1.2.3:1", "/");
        req.headers_mut().insert(
            "x-forwarded-for",
            HeaderValue::from_str(&format!("6.6.6.6, 198.51.100.{n}")).unwrap(),
        );
        assert_eq!(send(&mut app, req).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn hostile_keys_are_handled_without_panic() {
    let mut app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder(MemoryStore::new(), bucket("api", 2))
            .key(Header::new("x-api-key"))
            .build(),
    );
    let with_key = |value: HeaderValue| {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.headers_mut().insert("x-api-key", value);
        req
    };
    let invalid_utf8 = HeaderValue::from_bytes(b"caf\xe9\xff").unwrap();
    let huge = HeaderValue::from_str(&"k".repeat(16 * 1024)).unwrap();
    for value in [invalid_utf8.clone(), huge.clone()] {
        let r = send(&mut app, with_key(value.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = send(&mut app, with_key(value.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = send(&mut app, with_key(value)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // No key at all: 400 problem+json, not a panic and not a free pass.
    let r = send(&mut app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    assert!(
        json(r).await["detail"]
            .as_str()
            .unwrap()
            .contains("x-api-key")
    );
}

#[tokio::test]
async fn shadow_mode_decides_but_never_rejects() {
    let mut app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder(MemoryStore::new(), bucket("dark", 1))
            .shadow(true)
            .build(),
    );
    for _ in 0..5 {
        let r = send(&mut app, get_from("192.0.2.1:1", "/")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("ratelimit").is_none());
    }
}

/// The decision is made before the inner service is called: a refused request never
/// reaches it, on the synchronous (memory) and the remote (Redis) path alike.
#[tokio::test]
async fn refused_requests_never_reach_the_inner_service() {
    let redis = TestRedis::connect().await;
    async fn run<St: palisade_ratelimit::RateLimitStore>(store: St) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let inner = tower::service_fn(move |_req: Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) }
        });
        let mut svc = tower::ServiceBuilder::new()
            .layer(RateLimitLayer::new(store, bucket("inner", 2)))
            .service(inner);
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let r = svc
                .ready()
                .await
                .unwrap()
                .call(get_from("192.0.2.1:1", "/"))
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            if r.status() == StatusCode::OK {
                assert!(r.headers().get("ratelimit").is_some());
            }
        }
        assert_eq!(statuses, [200, 200, 429, 429, 429]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
    run(MemoryStore::new()).await;
    run(RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix)).await;
}

#[tokio::test]
async fn dead_backend_fails_open_or_closed_as_configured() {
    let mut node = RedisNode::start();
    let client = node.client().await;
    node.kill();
    let store = RedisStore::new(client).with_timeout(Duration::from_millis(50));
    let policy = |name: &str, on_error| {
        Policy::builder(name)
            .limit(name, TokenBucket::new(5, 1.0).unwrap())
            .unwrap()
            .on_backend_error(on_error)
            .build()
            .unwrap()
    };
    let mut open = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(
            store.clone(),
            policy("open", OnBackendError::FailOpen),
        ));
    let r = send(&mut open, get_from("192.0.2.1:1", "/")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("ratelimit").is_none(),
        "no verdict, no fields"
    );

    let mut closed = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(
            store,
            policy("closed", OnBackendError::FailClosed),
        ));
    let r = send(&mut closed, get_from("192.0.2.1:1", "/")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(json(r).await["status"], 503);
}

#[tokio::test]
async fn over_a_real_socket() {
    let redis = TestRedis::connect().await;
    let store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(store, bucket("socket", 3)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let req = Request::get("/")
            .header("host", addr.to_string())
            // Not trusted: the server keys by the socket peer.
            .header("x-forwarded-for", "1.2.3.4")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let r = sender.send_request(req).await.unwrap();
        statuses.push(r.status().as_u16());
        assert!(r.headers().contains_key("ratelimit-policy"));
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let secs: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(secs >= 1);
        }
        let _ = r.into_body().collect().await.unwrap();
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    server.abort();
}

#[tokio::test]
async fn grpc_clients_get_resource_exhausted() {
    let inner = tower::service_fn(|_req: Request<tonic::body::Body>| async {
        Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
    });
    let mut svc = tower::ServiceBuilder::new()
        .layer(
            RateLimitLayer::builder(MemoryStore::new(), bucket("grpc", 1))
                .responder(Grpc)
                .build(),
        )
        .service(inner);
    let request = || {
        let mut req = Request::post("/pkg.Service/Method")
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.1:1".parse().unwrap()));
        req
    };
    let ok = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(ok.headers().get("grpc-status").is_none());
    let refused = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::OK,
        "gRPC errors travel as grpc-status"
    );
    let status = tonic::Status::from_header_map(refused.headers()).unwrap();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let pushback: u64 = refused.headers()["grpc-retry-pushback-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushback > 0);
    assert!(refused.headers().contains_key("ratelimit"));
}
