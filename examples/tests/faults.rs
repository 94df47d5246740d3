//! The payments binary driven the way a bad network and a hostile client would: Redis paused
//! under load (never a second charge), connections that never finish their headers or bodies,
//! malformed paths, unknown keys, spoofed forwarding headers.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Instance, charges, pay, send, unique};
use http::{Method, StatusCode};
use palisade_testkit::RedisNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &str = r#"{"amount_cents": 500, "currency": "EUR"}"#;

/// Pays with `key` until the fleet answers 201, honouring `Retry-After` on 409, 429 and 503
/// (capped at 1 s); panics if the key is still not paid `bound` after it was first sent.
async fn pay_until_created(apps: &[String], order: &str, key: &str, bound: Duration) -> u64 {
    let started = Instant::now();
    let mut attempt = 0usize;
    loop {
        let base = &apps[attempt % apps.len()];
        attempt += 1;
        let url = format!("{base}/orders/{order}/payments");
        let headers = [
            ("x-api-key", "load"),
            ("idempotency-key", key),
            ("content-type", "application/json"),
        ];
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            send(Method::POST, &url, &headers, BODY),
        )
        .await
        .expect("answered within 10 s");
        match reply.status {
            StatusCode::CREATED => return reply.json()["charge_seq"].as_u64().unwrap(),
            StatusCode::CONFLICT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_problem(reply.status.as_u16());
                assert!(
                    started.elapsed() < bound,
                    "key {key} still not paid after {:?} (last: {})",
                    started.elapsed(),
                    String::from_utf8_lossy(&reply.body)
                );
                let wait: u64 = reply
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_millis((wait * 1000).clamp(50, 1000))).await;
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
}

/// Regression (12 919 charges for 12 917 payments): a ledger write that timed out during a Redis
/// stall landed when Redis resumed, the key was released, and the client's retry charged again.
/// Sixteen clients, three instances, Redis paused five times under load: the ledger holds exactly
/// one charge per key answered 201, and every key is paid within the documented bound (the
/// idempotency lease, 3 s here, after Redis returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_pause_under_load_never_charges_twice() {
    let node = RedisNode::start();
    let prefix = unique("pause");
    let env = [
        ("REDIS_URL", node.url()),
        ("PAYMENTS_REDIS_PREFIX", prefix.clone()),
        ("PAYMENTS_RATE_CAPACITY", "100000".into()),
        ("PAYMENTS_RATE_REFILL_PER_SEC", "100000".into()),
        ("PAYMENTS_IDEMPOTENCY_LEASE", "3s".into()),
    ];
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(Instance::start(&env).await);
    }
    let bases: Arc<Vec<String>> = Arc::new(apps.iter().map(|a| a.base.clone()).collect());
    let paid = Arc::new(Mutex::new(HashMap::<String, (String, u64)>::new()));
    let stop = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for client in 0..16 {
        let (bases, paid) = (bases.clone(), paid.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                let order = format!("o{}", (client * 7 + n) % 20);
                let key = format!("c{client}-{n}");
                // Bound: a 1 s pause, then the lease (3 s), with room for a loaded machine.
                let seq = pay_until_created(&bases, &order, &key, Duration::from_secs(20)).await;
                paid.lock().unwrap().insert(key, (order, seq));
                n += 1;
            }
        }));
    }
    // Five stalls of 1 s, 0.6 s apart: each catches some ledger writes in flight.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        node.pause();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        node.resume();
    }
    for client in clients {
        client.await.unwrap();
    }
    let paid = paid.lock().unwrap().clone();
    assert!(paid.len() > 30, "the load ran: {} payments", paid.len());
    let mut per_order: HashMap<String, HashSet<u64>> = HashMap::new();
    for (order, seq) in paid.values() {
        assert!(
            per_order.entry(order.clone()).or_default().insert(*seq),
            "two keys answered with charge {seq} of {order}"
        );
    }
    let mut charged = 0;
    for order in per_order.keys() {
        let ledger = charges(&apps[0], order).await;
        assert_eq!(ledger["overlaps"], 0, "{order}: {ledger}");
        charged += ledger["count"].as_u64().unwrap();
    }
    assert_eq!(
        charged,
        paid.len() as u64,
        "charges in the ledger vs keys answered 201"
    );
}

async fn raw(app: &Instance) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes): what it sent.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

/// Regression: half-open and idle connections stayed open for 200 s+, and 20 100 connections
/// that each sent one header line used every file descriptor. Headers must be complete within
/// the header timeout, bodies within the body timeout, and connections beyond the limit wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_off() {
    let app = Instance::start(&[
        ("PAYMENTS_HEADER_TIMEOUT", "1s".into()),
        ("PAYMENTS_BODY_TIMEOUT", "1s".into()),
        ("PAYMENTS_MAX_CONNECTIONS", "4".into()),
    ])
    .await;
    // One header line, then nothing: closed.
    let mut slow = raw(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection without complete headers stays open"
    );
    // Headers, then a body that never finishes: 408 problem+json.
    let mut slow_body = raw(&app).await;
    slow_body
        .write_all(
            b"POST /orders/o1/payments HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n\
              idempotency-key: b\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"amount",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut slow_body, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // Idle connections fill the limit; a new client is served once they are cut off.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(raw(&app).await);
    }
    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        send(Method::GET, &app.url("/health"), &[], ""),
    )
    .await
    .expect("served once the idle connections time out");
    assert_eq!(health.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    for mut conn in idle {
        assert!(
            until_closed(&mut conn, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
}

/// Bad input is a problem+json answer, and a bad order id is refused before any claim or lock:
/// `%FF` (not UTF-8 once decoded), unknown routes and methods, unknown API keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_problem_json() {
    let app = Instance::start(&[("PAYMENTS_API_KEYS", "k1, k2".into())]).await;
    pay(&app, "%FF", "k1", "bad-id", BODY, 0)
        .await
        .assert_problem(400);
    pay(&app, "o%2F1", "k1", "slash", BODY, 0)
        .await
        .assert_problem(400);
    // A percent-encoded id is the decoded id: one payment, replayed.
    let plain = pay(&app, "o-1", "k1", "enc", BODY, 0).await;
    assert_eq!(plain.status, StatusCode::CREATED);
    let encoded = pay(&app, "%6F-1", "k1", "enc", BODY, 0).await;
    assert_eq!(encoded.status, StatusCode::CREATED);
    assert_eq!(encoded.headers["idempotent-replayed"], "true");
    assert_eq!(charges(&app, "o-1").await["count"], 1);
    send(Method::GET, &app.url("/nowhere"), &[], "")
        .await
        .assert_problem(404);
    send(Method::DELETE, &app.url("/health"), &[], "")
        .await
        .assert_problem(405);
    // Over-long targets and header blocks: problem+json too.
    let long = format!("/orders/o-1/charges?pad={}", "x".repeat(9000));
    send(Method::GET, &app.url(&long), &[], "")
        .await
        .assert_problem(414);
    let big = "v".repeat(17 * 1024);
    send(Method::GET, &app.url("/health"), &[("x-big", &big)], "")
        .await
        .assert_problem(431);
    // Only the configured keys: rotating made-up keys escapes no limit.
    pay(&app, "o-2", "made-up", "x", BODY, 0)
        .await
        .assert_problem(401);
    assert_eq!(
        pay(&app, "o-2", "k2", "x", BODY, 0).await.status,
        StatusCode::CREATED
    );
}

/// Behind a trusted proxy the client address is the one the proxy appended to
/// `X-Forwarded-For`; a client's own `Forwarded: for=…` never chooses the per-IP bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_proxys_header_names_the_client() {
    let app = Instance::start(&[
        ("PAYMENTS_TRUSTED_PROXIES", "127.0.0.1/32".into()),
        ("PAYMENTS_IP_RATE_CAPACITY", "2".into()),
        ("PAYMENTS_IP_RATE_REFILL_PER_SEC", "0.001".into()),
    ])
    .await;
    let attempt = |xff: &'static str, forwarded: &'static str, key: &'static str| {
        let url = app.url("/orders/o-9/payments");
        async move {
            send(
                Method::POST,
                &url,
                &[
                    ("x-api-key", key),
                    ("idempotency-key", key),
                    ("content-type", "application/json"),
                    ("x-forwarded-for", xff),
                    ("forwarded", forwarded),
                ],
                BODY,
            )
            .await
            .status
        }
    };
    assert_eq!(
        attempt("203.0.113.5", "for=1.1.1.1", "a").await,
        StatusCode::CREATED
    );
    assert_eq!(
        attempt("203.0.113.5", "for=2.2.2.2", "b").await,
        StatusCode::CREATED
    );
    // Same client (XFF), a third spoofed Forwarded: the client's bucket is empty.
    assert_eq!(
        attempt("203.0.113.5", "for=3.3.3.3", "c").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the proxy has its own bucket.
    assert_eq!(
        attempt("198.51.100.7", "for=3.3.3.3", "d").await,
        StatusCode::CREATED
    );
}

/// Regression: in a stall one request paid timeout after timeout (a rate-limit check failing
/// open, then the claim, the lock, the ledger…). The request budget bounds the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_backend_is_answered_within_the_request_budget() {
    use palisade_testkit::{FaultMode, FaultProxy};
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let app = Instance::start(&[
        ("REDIS_URL", proxy.redis_url()),
        ("PAYMENTS_REQUEST_BUDGET", "700ms".into()),
    ])
    .await;
    assert_eq!(
        pay(&app, "o", "k", "before", BODY, 0).await.status,
        StatusCode::CREATED
    );
    // Every Redis round trip now takes ~400 ms: each call is under its own 500 ms timeout,
    // but a payment makes six of them in sequence.
    proxy.set(FaultMode::Latency(Duration::from_millis(200)));
    for i in 0..3 {
        let started = Instant::now();
        let reply = pay(&app, "o", "k", &format!("slow-{i}"), BODY, 0).await;
        let took = started.elapsed();
        assert!(
            matches!(
                reply.status,
                StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        // The budget, plus room for a loaded machine — never the sum of the round trips.
        assert!(
            took < Duration::from_millis(1300),
            "answered after {took:?}"
        );
    }
    proxy.set(FaultMode::Pass);
}

/// Regression: a client hanging up mid-payment left the order's critical-section mark behind,
/// and every later payment on that order logged a false overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_leaves_no_mark() {
    let node = RedisNode::start();
    let app = Instance::start(&[("REDIS_URL", node.url())]).await;
    // Hang up 300 ms into a payment that works for 1 s inside the order's lock.
    let hung_up = tokio::time::timeout(
        Duration::from_millis(300),
        pay(&app, "o-hang", "k", "first", BODY, 1000),
    )
    .await;
    assert!(hung_up.is_err(), "the client hung up mid-payment");
    // The next payment on the order (once the lock is free) sees no one inside.
    let next = pay_until_created(
        std::slice::from_ref(&app.base),
        "o-hang",
        "second",
        Duration::from_secs(15),
    )
    .await;
    assert!(next >= 1);
    assert_eq!(charges(&app, "o-hang").await["overlaps"], 0);
}
