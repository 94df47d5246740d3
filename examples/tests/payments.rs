//! The payments service's HTTP contract, driven against the real binary: one in-memory
//! instance, and three instances sharing the test Redis (and PostgreSQL).

mod common;

use std::time::{Duration, Instant};

use common::{Instance, charges, pay, send, unique};
use http::{Method, StatusCode};
use palisade_testkit::{FaultMode, FaultProxy, RedisNode};

const BODY: &str = r#"{"amount_cents": 500, "currency": "EUR"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_in_memory() {
    let app = Instance::start(&[
        ("PAYMENTS_RATE_CAPACITY", "5".into()),
        ("PAYMENTS_RATE_REFILL_PER_SEC", "0.01".into()),
    ])
    .await;
    let health = send(Method::GET, &app.url("/health"), &[], "").await;
    assert_eq!(
        (health.status, health.json()),
        (StatusCode::OK, serde_json::json!({"status": "healthy"}))
    );
    let ready = send(Method::GET, &app.url("/ready"), &[], "").await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, serde_json::json!({"status": "ready"}))
    );

    // 401 without an API key.
    send(
        Method::POST,
        &app.url("/orders/o1/payments"),
        &[("idempotency-key", "k")],
        BODY,
    )
    .await
    .assert_problem(401);
    // 400: missing and malformed keys.
    send(
        Method::POST,
        &app.url("/orders/o1/payments"),
        &[("x-api-key", "a"), ("content-type", "application/json")],
        BODY,
    )
    .await
    .assert_problem(400);
    pay(&app, "o1", "a", "\"unterminated", BODY, 0)
        .await
        .assert_problem(400);
    // 413 over 64 KiB.
    let big = format!(
        r#"{{"amount_cents": 1, "currency": "EUR", "pad": "{}"}}"#,
        "x".repeat(70_000)
    );
    pay(&app, "o1", "a", "big", &big, 0)
        .await
        .assert_problem(413);
    // 415 / 400 for a non-JSON body, 422 for invalid values.
    send(
        Method::POST,
        &app.url("/orders/o1/payments"),
        &[
            ("x-api-key", "a"),
            ("idempotency-key", "t"),
            ("content-type", "text/plain"),
        ],
        "hello",
    )
    .await
    .assert_problem(415);
    pay(&app, "o1", "a", "j", "{not json", 0)
        .await
        .assert_problem(400);

    // Budget of 5 for key "b": everything below counts.
    let key = "b";
    pay(
        &app,
        "o2",
        key,
        "v1",
        r#"{"amount_cents": 0, "currency": "EUR"}"#,
        0,
    )
    .await
    .assert_problem(422);
    pay(
        &app,
        "o2",
        key,
        "v2",
        r#"{"amount_cents": 5, "currency": "EURO"}"#,
        0,
    )
    .await
    .assert_problem(422);
    let first = pay(&app, "o2", key, "pay-1", BODY, 0).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let json = first.json();
    assert_eq!(json["order_id"], "o2");
    assert_eq!(json["amount_cents"], 500);
    assert_eq!(json["charge_seq"], 1);
    assert!(uuid::Uuid::parse_str(json["payment_id"].as_str().unwrap()).is_ok());
    let replay = pay(&app, "o2", key, "pay-1", BODY, 0).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body, "byte-identical replay");
    // Same key, different body: 422.
    pay(
        &app,
        "o2",
        key,
        "pay-1",
        r#"{"amount_cents": 501, "currency": "EUR"}"#,
        0,
    )
    .await
    .assert_problem(422);
    // Over the rate: 429 with Retry-After and the IETF headers.
    let limited = pay(&app, "o2", key, "pay-2", BODY, 0).await;
    limited.assert_problem(429);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(limited.headers.contains_key("ratelimit"));
    assert!(limited.headers.contains_key("ratelimit-policy"));
    assert_eq!(charges(&app, "o2").await["count"], 1);

    // 409 while the first request with a key is still running.
    let slow = tokio::spawn({
        let base = app.base.clone();
        async move {
            let url = format!("{base}/orders/o3/payments?work_ms=1500");
            send(
                Method::POST,
                &url,
                &[
                    ("x-api-key", "c"),
                    ("idempotency-key", "slow"),
                    ("content-type", "application/json"),
                ],
                BODY,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pay(&app, "o3", "c", "slow", BODY, 1500)
        .await
        .assert_problem(409);
    assert_eq!(slow.await.unwrap().status, StatusCode::CREATED);

    let resilience = send(Method::GET, &app.url("/resilience"), &[], "")
        .await
        .json();
    assert_eq!(resilience["breakers"][0]["state"], "closed");
    assert!(resilience["bulkheads"][0]["limit"].as_u64().unwrap() > 0);
}

async fn fleet(extra: &[(&str, String)]) -> (Vec<Instance>, String) {
    let prefix = unique("pay");
    let mut env = vec![
        ("REDIS_URL", palisade_testkit::redis_url()),
        ("PAYMENTS_REDIS_PREFIX", prefix.clone()),
        ("PAYMENTS_RATE_CAPACITY", "20".into()),
        ("PAYMENTS_RATE_REFILL_PER_SEC", "0.001".into()),
    ];
    env.extend(extra.iter().cloned());
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(Instance::start(&env).await);
    }
    (apps, prefix)
}

async fn duplicates_and_overlaps(apps: &[Instance], tag: &str) {
    // 20 concurrent identical requests over three instances (the key's whole rate budget):
    // one charge.
    let order = format!("dup-{tag}");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = apps[i % 3].base.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/orders/{order}/payments?work_ms=50");
            send(
                Method::POST,
                &url,
                &[
                    ("x-api-key", "dup"),
                    ("idempotency-key", "\"same\""),
                    ("content-type", "application/json"),
                ],
                BODY,
            )
            .await
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => bodies.push(reply.body),
            StatusCode::CONFLICT => reply.assert_problem(409),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every 201 is the same payment");
    let ledger = charges(&apps[1], &order).await;
    assert_eq!(
        (ledger["count"].as_u64(), ledger["overlaps"].as_u64()),
        (Some(1), Some(0))
    );

    // 12 different payments for one order at once: serialised by the lock, no overlap.
    let order = format!("lock-{tag}");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let base = apps[i % 3].base.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/orders/{order}/payments?work_ms=30");
            let idem = format!("k-{i}");
            send(
                Method::POST,
                &url,
                &[
                    ("x-api-key", "locker"),
                    ("idempotency-key", &idem),
                    ("content-type", "application/json"),
                ],
                BODY,
            )
            .await
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        seqs.push(reply.json()["charge_seq"].as_u64().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let ledger = charges(&apps[0], &order).await;
    assert_eq!(ledger["count"], 12);
    assert_eq!(ledger["total_cents"], 12 * 500);
    assert_eq!(ledger["overlaps"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis() {
    let (apps, _) = fleet(&[]).await;
    duplicates_and_overlaps(&apps, "redis").await;

    // The rate limit is one budget across the fleet: exactly 20 of 30 pass.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let base = apps[i % 3].base.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/orders/rate-{i}/payments");
            let idem = format!("r-{i}");
            send(
                Method::POST,
                &url,
                &[
                    ("x-api-key", "rated"),
                    ("idempotency-key", &idem),
                    ("content-type", "application/json"),
                ],
                BODY,
            )
            .await
            .status
        }));
    }
    let mut created = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, limited), (20, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis_and_postgres() {
    let (apps, _) = fleet(&[("DATABASE_URL", palisade_testkit::database_url())]).await;
    duplicates_and_overlaps(&apps, &unique("dual")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_within_two_seconds_and_recovers() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let app = Instance::start(&[("REDIS_URL", proxy.redis_url())]).await;
    assert_eq!(
        pay(&app, "o", "k", "before", BODY, 0).await.status,
        StatusCode::CREATED
    );
    for mode in [FaultMode::BlackHole, FaultMode::Drop] {
        proxy.set(mode);
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            pay(&app, "o", "k", "during", BODY, 0),
        )
        .await
        .expect("answered within 2 s");
        reply.assert_problem(503);
        assert!(reply.headers.contains_key("retry-after"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    proxy.set(FaultMode::Pass);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = pay(&app, "o", "k", "after", BODY, 0).await.status;
        if status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::CREATED, "recovered by itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_under_a_failing_upstream_and_closes_after_it_heals() {
    let config = std::env::temp_dir().join(format!("{}.toml", unique("payments")));
    std::fs::write(
        &config,
        r#"
[quote]
attempts = 2
attempt_timeout = "500ms"
[quote.breaker]
name = "upstream"
failure_rate = 0.5
window = { calls = 4 }
minimum_calls = 4
half_open_probes = 1
open = "1s"
"#,
    )
    .unwrap();
    let app = Instance::start(&[("PAYMENTS_CONFIG", config.display().to_string())]).await;
    let quote = send(Method::GET, &app.url("/quote"), &[], "").await;
    assert_eq!(quote.status, StatusCode::OK);
    assert_eq!(quote.json()["attempts"], 1);

    let behaviour = |fail_rate: f64| {
        let url = app.url("/upstream/behaviour");
        async move {
            let body = format!(r#"{{"fail_rate": {fail_rate}, "latency_ms": 0}}"#);
            let reply = send(
                Method::PUT,
                &url,
                &[("content-type", "application/json")],
                body,
            )
            .await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT);
        }
    };
    behaviour(1.0).await;
    let mut opened = None;
    for _ in 0..20 {
        let reply = send(Method::GET, &app.url("/quote"), &[], "").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            opened = Some(reply);
            break;
        }
        reply.assert_problem(502);
        assert_eq!(reply.json()["attempts"], 2, "retried once");
    }
    let opened = opened.expect("the breaker opened");
    opened.assert_problem(503);
    assert!(opened.headers.contains_key("retry-after"));
    let ready = send(Method::GET, &app.url("/ready"), &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "degraded", "reason": "circuit_open"})
    );
    let resilience = send(Method::GET, &app.url("/resilience"), &[], "")
        .await
        .json();
    assert_eq!(resilience["breakers"][0]["state"], "open");

    behaviour(0.0).await;
    let mut healed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if send(Method::GET, &app.url("/quote"), &[], "").await.status == StatusCode::OK {
            healed = true;
            break;
        }
    }
    assert!(healed, "the breaker closed after the upstream healed");
    let ready = send(Method::GET, &app.url("/ready"), &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_is_503_and_not_an_upstream_failure() {
    let config = std::env::temp_dir().join(format!("{}.toml", unique("payments-bulkhead")));
    std::fs::write(
        &config,
        r#"
[quote]
concurrency = 1
queue = 0
attempts = 1
attempt_timeout = "3s"
[quote.breaker]
name = "upstream"
window = { calls = 4 }
minimum_calls = 2
failure_rate = 0.5
"#,
    )
    .unwrap();
    let app = Instance::start(&[("PAYMENTS_CONFIG", config.display().to_string())]).await;
    let body = r#"{"fail_rate": 0.0, "latency_ms": 800}"#;
    let set = send(
        Method::PUT,
        &app.url("/upstream/behaviour"),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = app.url("/quote");
        tasks.push(tokio::spawn(async move {
            send(Method::GET, &url, &[], "").await
        }));
    }
    let (mut ok, mut full) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_problem(503);
                assert!(reply.headers.contains_key("retry-after"));
                full += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && full >= 1, "ok {ok}, full {full}");
    // The bulkhead's refusals said nothing about the upstream: the breaker stayed closed.
    let resilience = send(Method::GET, &app.url("/resilience"), &[], "")
        .await
        .json();
    assert_eq!(resilience["breakers"][0]["state"], "closed");
    assert_eq!(resilience["bulkheads"][0]["limit"], 1);
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_toml_configures_every_route() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/payments.toml");
    let app = Instance::start(&[("PAYMENTS_CONFIG", path.to_owned())]).await;
    let resilience = send(Method::GET, &app.url("/resilience"), &[], "")
        .await
        .json();
    let policy = resilience["rate_limits"][0]["policy"].as_str().unwrap();
    assert!(
        policy.contains("\"burst\";q=20") && policy.contains("\"daily\";q=10000"),
        "{policy}"
    );
    assert_eq!(resilience["bulkheads"][0]["limit"], 8);
    assert_eq!(resilience["breakers"][0]["name"], "upstream");
    let paid = pay(&app, "toml-1", "k", "t-1", BODY, 0).await;
    assert_eq!(paid.status, StatusCode::CREATED);
    assert!(
        paid.headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("daily")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_redis_is_down_recovers_when_it_returns() {
    let mut node = RedisNode::start();
    node.kill();
    let app = Instance::start(&[("REDIS_URL", node.url())]).await;
    pay(&app, "o", "k", "down", BODY, 0)
        .await
        .assert_problem(503);
    node.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = pay(&app, "o", "k", "down", BODY, 0).await.status;
        if status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::CREATED, "recovered without a restart");
}
