//! The ledger example driven from outside as its contract says: over real sockets against the
//! machine's PostgreSQL, one instance for the contract, two for the contended withdrawals.

mod common;

use std::time::Duration;

use common::{Instance, Reply, send};
use http::Method;
use palisade_testkit::{database_url, unique_prefix};
use serde_json::{Value, json};

const LEDGER_ENV: [&str; 4] = [
    "DATABASE_URL",
    "LEDGER_ADDR",
    "LEDGER_SCHEMA",
    "LEDGER_SNAPSHOT_EVERY",
];

async fn start(schema: &str, snapshot_every: &str) -> Instance {
    Instance::spawn(
        env!("CARGO_BIN_EXE_ledger"),
        &["ledger listening on "],
        &LEDGER_ENV,
        &[
            ("DATABASE_URL", database_url()),
            ("LEDGER_ADDR", "127.0.0.1:0".into()),
            ("LEDGER_SCHEMA", schema.into()),
            ("LEDGER_SNAPSHOT_EVERY", snapshot_every.into()),
        ],
    )
    .await
}

fn schema() -> String {
    unique_prefix("ledger_t").replace('-', "_").to_lowercase()
}

async fn post(ledger: &Instance, path: &str, body: Value) -> Reply {
    send(
        Method::POST,
        &ledger.url(path),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn get(ledger: &Instance, path: &str) -> Reply {
    send(Method::GET, &ledger.url(path), &[], "").await
}

/// Polls `/balances/{id}` until it shows `balance` (60 s at most).
async fn projected(ledger: &Instance, id: &str, balance: i64) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let reply = get(ledger, &format!("/balances/{id}")).await;
        if reply.status == 200 {
            last = reply.json();
            if last["balance_cents"] == balance {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the projection did not reach {balance}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_contract() {
    let ledger = start(&schema(), "3").await;
    // Before the first event: the projection has nothing.
    get(&ledger, "/balances/a-1").await.assert_problem(404);
    assert_eq!(get(&ledger, "/accounts/a-1").await.json()["version"], 0);
    let first = post(
        &ledger,
        "/accounts/a-1/deposit",
        json!({"amount_cents": 1000}),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json(), json!({"version": 1, "balance_cents": 1000}));
    let second = post(
        &ledger,
        "/accounts/a-1/withdraw",
        json!({"amount_cents": 300, "expected_version": 1}),
    )
    .await;
    assert_eq!(second.json(), json!({"version": 2, "balance_cents": 700}));
    // A stale expected version: 409 with both versions.
    let stale = post(
        &ledger,
        "/accounts/a-1/withdraw",
        json!({"amount_cents": 1, "expected_version": 1}),
    )
    .await;
    stale.assert_problem(409);
    assert_eq!(
        (
            stale.json()["expected"].clone(),
            stale.json()["actual"].clone()
        ),
        (json!(1), json!(2))
    );
    // 422: amount ≤ 0, insufficient funds, malformed bodies.
    for body in [
        json!({"amount_cents": 0}),
        json!({"amount_cents": -5}),
        json!({"amount_cents": "5"}),
        json!({}),
    ] {
        post(&ledger, "/accounts/a-1/deposit", body)
            .await
            .assert_problem(422);
    }
    post(
        &ledger,
        "/accounts/a-1/withdraw",
        json!({"amount_cents": 701}),
    )
    .await
    .assert_problem(422);
    send(
        Method::POST,
        &ledger.url("/accounts/a-1/deposit"),
        &[],
        "{oops",
    )
    .await
    .assert_problem(422);
    // More events, past two snapshots (every 3): state from snapshot + tail equals the events.
    for _ in 0..5 {
        assert_eq!(
            post(
                &ledger,
                "/accounts/a-1/deposit",
                json!({"amount_cents": 10})
            )
            .await
            .status,
            200
        );
    }
    let account = get(&ledger, "/accounts/a-1").await.json();
    assert_eq!(
        (account["balance_cents"].clone(), account["version"].clone()),
        (json!(750), json!(7))
    );
    let events = get(&ledger, "/accounts/a-1/events").await.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 7);
    assert_eq!(events[0]["event_type"], "account.deposited");
    assert_eq!(events[1]["event_type"], "account.withdrawn");
    assert_eq!(events[1]["amount_cents"], 300);
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=7).collect::<Vec<_>>());

    let balance = projected(&ledger, "a-1", 750).await;
    assert_eq!(balance["account_id"], "a-1");
    assert_eq!(balance["position"], events[6]["position"]);
    let projections = get(&ledger, "/projections").await.json();
    assert_eq!(projections["projections"][0]["name"], "balances");
    assert_eq!(projections["projections"][0]["lag"], 0);
    let rebuilt = post(&ledger, "/projections/balances/rebuild", json!({})).await;
    assert_eq!(
        rebuilt.status,
        200,
        "{}",
        String::from_utf8_lossy(&rebuilt.body)
    );
    assert_eq!(
        get(&ledger, "/balances/a-1").await.json()["balance_cents"],
        750
    );
    post(&ledger, "/projections/nope/rebuild", json!({}))
        .await
        .assert_problem(404);
    get(&ledger, "/accounts/bad%20id").await.assert_problem(404);
    // An Idempotency-Key makes a retried deposit change nothing, and answer the first result.
    let url = ledger.url("/accounts/a-1/deposit");
    let keyed = |amount: i64| {
        send(
            Method::POST,
            &url,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "dep-1"),
            ],
            json!({"amount_cents": amount}).to_string(),
        )
    };
    let first = keyed(10).await;
    assert_eq!(first.json(), json!({"version": 8, "balance_cents": 760}));
    let retried = keyed(10).await;
    assert_eq!(retried.json(), json!({"version": 8, "balance_cents": 760}));
    assert_eq!(get(&ledger, "/accounts/a-1").await.json()["version"], 8);
}

/// 50 concurrent withdrawals of 100 from a balance of 1 000, over two instances: exactly 10
/// succeed, no answer shows a negative balance, and the projection converges to the
/// event-sourced balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_withdrawals_on_two_instances_exactly_ten_succeed() {
    let schema = schema();
    let instances = [start(&schema, "100").await, start(&schema, "100").await];
    for round in 0..2 {
        let account = format!("acct-{round}");
        let deposit = post(
            &instances[0],
            &format!("/accounts/{account}/deposit"),
            json!({"amount_cents": 1000}),
        )
        .await;
        assert_eq!(deposit.status, 200);
        let urls: Vec<String> = (0..50)
            .map(|i| instances[i % 2].url(&format!("/accounts/{account}/withdraw")))
            .collect();
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|url| {
                tokio::spawn(async move {
                    send(
                        Method::POST,
                        &url,
                        &[("content-type", "application/json")],
                        r#"{"amount_cents": 100}"#,
                    )
                    .await
                })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            let reply = t.await.unwrap();
            match reply.status.as_u16() {
                200 => {
                    assert!(reply.json()["balance_cents"].as_i64().unwrap() >= 0);
                    ok += 1;
                }
                422 => refused += 1,
                other => panic!(
                    "unexpected {other}: {}",
                    String::from_utf8_lossy(&reply.body)
                ),
            }
        }
        assert_eq!((ok, refused), (10, 40), "round {round}");
        let account_state = get(&instances[1], &format!("/accounts/{account}"))
            .await
            .json();
        assert_eq!(account_state["balance_cents"], 0);
        assert_eq!(account_state["version"], 11);
        projected(&instances[0], &account, 0).await;
    }
}
