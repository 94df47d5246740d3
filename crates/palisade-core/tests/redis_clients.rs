//! The client contract, on both clients palisade supports and against real servers: every
//! reply shape a script can produce, the `NOSCRIPT` reload, server errors, timeouts on a paused
//! server, and plain commands. A new adapter passes this file or it is not done.
#![cfg(all(feature = "fred", feature = "redis-rs"))]

use std::{sync::LazyLock, time::Duration};

use bytes::Bytes;
use palisade_core::{
    BackendError,
    redis::{Arg, CallError, RedisClient, RedisScript, Reply},
};
use palisade_testkit::{RedisNode, TestRedis};

static SHAPES: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        "return {1, 'text', ARGV[1], false, {KEYS[1], -7}, redis.status_reply('FINE'), ARGV[2]}",
    )
});
static FAILS: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new("return redis.error_reply('BROKEN on purpose')"));
static ECHO: LazyLock<RedisScript> = LazyLock::new(|| RedisScript::new("return ARGV[1]"));

const TIMEOUT: Duration = Duration::from_secs(2);

async fn every_reply_shape<C: RedisClient>(client: C, key: &str) {
    let binary = Bytes::from_static(b"\x00\xff\r\nbytes");
    let reply: Reply = SHAPES
        .invoke(
            &client,
            &[key.to_owned()],
            &[Arg::Bytes(binary.clone()), Arg::Int(42)],
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Int(1),
            Reply::Bytes(Bytes::from_static(b"text")),
            Reply::Bytes(binary),
            Reply::Nil,
            Reply::Array(vec![Reply::Bytes(key.to_owned().into()), Reply::Int(-7)]),
            Reply::Bytes(Bytes::from_static(b"FINE")),
            Reply::Bytes(Bytes::from_static(b"42")),
        ])
    );
}

async fn reloads_after_script_flush<C: RedisClient>(client: C, node: &RedisNode) {
    let echo = |n: i64| {
        let client = client.clone();
        async move {
            ECHO.invoke::<_, i64>(&client, &["k".to_owned()], &[Arg::Int(n)], TIMEOUT)
                .await
        }
    };
    assert_eq!(echo(1).await, Ok(1));
    node.script_flush();
    // EVALSHA now answers NOSCRIPT: the source goes once with EVAL, and is cached again.
    assert_eq!(echo(2).await, Ok(2));
    assert_eq!(echo(3).await, Ok(3));
}

async fn server_errors_are_errors<C: RedisClient>(client: C) {
    let failed = FAILS
        .invoke::<_, Reply>(&client, &["k".to_owned()], &[], TIMEOUT)
        .await;
    match failed {
        Err(BackendError::Unavailable(message)) => assert!(message.contains("BROKEN"), "{message}"),
        other => panic!("expected the script's error, got {other:?}"),
    }
    // A reply of the wrong shape is a protocol error, not a panic.
    let wrong = ECHO
        .invoke::<_, Vec<i64>>(&client, &["k".to_owned()], &[Arg::from("x")], TIMEOUT)
        .await;
    assert!(matches!(wrong, Err(BackendError::Protocol(_))), "{wrong:?}");
}

async fn a_paused_server_times_out<C: RedisClient>(client: C, node: &RedisNode) {
    assert_eq!(
        ECHO.invoke::<_, i64>(&client, &["k".to_owned()], &[Arg::Int(5)], TIMEOUT)
            .await,
        Ok(5)
    );
    node.pause();
    let started = std::time::Instant::now();
    let late = ECHO
        .invoke::<_, i64>(
            &client,
            &["k".to_owned()],
            &[Arg::Int(6)],
            Duration::from_millis(100),
        )
        .await;
    node.resume();
    assert_eq!(late, Err(BackendError::Timeout(Duration::from_millis(100))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded, not hung"
    );

    // A pipeline abandoned on a paused server: its late replies must never be taken for the
    // next call's.
    node.pause();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        client.pipeline(&[
            ("SET", vec![Arg::from("late"), Arg::from("stale")]),
            ("GET", vec![Arg::from("late")]),
        ]),
    )
    .await;
    assert!(abandoned.is_err(), "cut off by the caller's deadline");
    node.resume();
    let fresh = client
        .pipeline(&[
            ("SET", vec![Arg::from("fresh"), Arg::from("new")]),
            ("GET", vec![Arg::from("fresh")]),
        ])
        .await
        .unwrap();
    assert_eq!(
        fresh,
        vec![
            Reply::Bytes(Bytes::from_static(b"OK")),
            Reply::Bytes(Bytes::from_static(b"new")),
        ]
    );
    let one = client.command("GET", &[Arg::from("fresh")]).await.unwrap();
    assert_eq!(one, Reply::Bytes(Bytes::from_static(b"new")));
}

async fn plain_commands<C: RedisClient>(client: C, key: &str) {
    let set = client
        .command(
            "SET",
            &[
                Arg::from(key),
                Arg::from("v"),
                Arg::from("PX"),
                Arg::Int(60_000),
            ],
        )
        .await
        .unwrap();
    assert_eq!(set, Reply::Bytes(Bytes::from_static(b"OK")));
    let got = client.command("GET", &[Arg::from(key)]).await.unwrap();
    assert_eq!(got, Reply::Bytes(Bytes::from_static(b"v")));
    let missing = client
        .command("GET", &[Arg::from(format!("{key}:missing"))])
        .await
        .unwrap();
    assert_eq!(missing, Reply::Nil);
}

async fn pipelines<C: RedisClient>(client: C, tag: &str) {
    let (a, b) = (format!("{{{tag}}}:a"), format!("{{{tag}}}:b"));
    let commands = [
        (
            "SET",
            vec![
                Arg::from(a.as_str()),
                Arg::from("1"),
                Arg::from("PX"),
                Arg::Int(60_000),
            ],
        ),
        ("INCR", vec![Arg::from(a.as_str())]),
        ("GET", vec![Arg::from(b.as_str())]),
        (
            "RPUSH",
            vec![Arg::from(b.as_str()), Arg::from("x"), Arg::from("y")],
        ),
        (
            "LRANGE",
            vec![Arg::from(b.as_str()), Arg::Int(0), Arg::Int(-1)],
        ),
        ("PEXPIRE", vec![Arg::from(b.as_str()), Arg::Int(60_000)]),
    ];
    let replies = client.pipeline(&commands).await.unwrap();
    assert_eq!(
        replies,
        vec![
            Reply::Bytes(Bytes::from_static(b"OK")),
            Reply::Int(2),
            Reply::Nil,
            Reply::Int(2),
            Reply::Array(vec![
                Reply::Bytes(Bytes::from_static(b"x")),
                Reply::Bytes(Bytes::from_static(b"y")),
            ]),
            Reply::Int(1),
        ]
    );
    // One command whose reply is an array stays one reply (not flattened into several).
    let one = client
        .pipeline(&[(
            "LRANGE",
            vec![Arg::from(b.as_str()), Arg::Int(0), Arg::Int(-1)],
        )])
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    // A command's error reply is the pipeline's error.
    let wrong = client
        .pipeline(&[
            ("GET", vec![Arg::from(a.as_str())]),
            ("INCR", vec![Arg::from(b.as_str())]),
        ])
        .await;
    assert!(matches!(wrong, Err(CallError::Backend(_))), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_meets_the_contract() {
    let redis = TestRedis::connect().await;
    let key = format!("{}:shapes", redis.prefix);
    every_reply_shape(redis.client.clone(), &key).await;
    server_errors_are_errors(redis.client.clone()).await;
    plain_commands(redis.client.clone(), &key).await;
    pipelines(redis.client.clone(), &key).await;
    let node = RedisNode::start();
    reloads_after_script_flush(node.client().await, &node).await;
    a_paused_server_times_out(node.client().await, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_meets_the_contract() {
    let redis = TestRedis::connect().await;
    let key = format!("{}:shapes", redis.prefix);
    every_reply_shape(redis.redis_rs().await, &key).await;
    server_errors_are_errors(redis.redis_rs().await).await;
    plain_commands(redis.redis_rs().await, &key).await;
    pipelines(redis.redis_rs().await, &key).await;
    let node = RedisNode::start();
    reloads_after_script_flush(node.redis_rs().await, &node).await;
    a_paused_server_times_out(node.redis_rs().await, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_meet_the_contract_on_a_cluster() {
    let cluster = palisade_testkit::RedisCluster::start();
    let (fred, redis_rs) = (cluster.client().await, cluster.redis_rs().await);
    for i in 0..20 {
        // Keys spread over every master: each call goes to the node owning its key.
        let key = format!("shapes-{i}");
        every_reply_shape(fred.clone(), &key).await;
        every_reply_shape(redis_rs.clone(), &key).await;
        plain_commands(fred.clone(), &key).await;
        plain_commands(redis_rs.clone(), &key).await;
        // One hash slot per pipeline, on whichever node owns it.
        pipelines(fred.clone(), &format!("fred-{i}")).await;
        pipelines(redis_rs.clone(), &format!("redis-rs-{i}")).await;
    }
}
