//! The orders example driven from outside, exactly as its contract says: over real sockets,
//! against the machine's PostgreSQL and a private `nats-server -js` (or the shared Redis),
//! with API instances, relays and the projector as separate processes killed (SIGKILL) and
//! restarted, and the broker stopped and restarted.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use common::{Instance, Reply, send};
use http::Method;
use palisade_testkit::{NatsServer, database_url, redis_url, unique_prefix};
use serde_json::{Value, json};

/// The variables that select the orders service's backends: cleared, so a test runs only with
/// what it sets.
const ORDERS_ENV: [&str; 10] = [
    "DATABASE_URL",
    "NATS_URL",
    "REDIS_URL",
    "ORDERS_SINK",
    "ORDERS_ADDR",
    "ORDERS_SCHEMA",
    "ORDERS_STREAM",
    "ORDERS_SUBJECT",
    "ORDERS_ROLE",
    "ORDERS_CONFIG",
];

/// Where one test's orders service lives: its schema, its broker, its stream.
#[derive(Clone)]
struct Deployment {
    env: Vec<(&'static str, String)>,
    stream: String,
}

impl Deployment {
    fn nats(server: &NatsServer) -> Deployment {
        let stream = unique_prefix("ORDERS").replace('-', "_").to_uppercase();
        Deployment {
            env: vec![
                ("DATABASE_URL", database_url()),
                ("NATS_URL", server.url()),
                ("ORDERS_SCHEMA", schema_name()),
                ("ORDERS_STREAM", stream.clone()),
                ("ORDERS_SUBJECT", "orders".into()),
            ],
            stream,
        }
    }

    fn redis() -> Deployment {
        let stream = unique_prefix("orders-stream");
        Deployment {
            env: vec![
                ("DATABASE_URL", database_url()),
                ("ORDERS_SINK", "redis".into()),
                ("REDIS_URL", redis_url()),
                ("ORDERS_SCHEMA", schema_name()),
                ("ORDERS_STREAM", stream.clone()),
            ],
            stream,
        }
    }

    async fn start(&self, role: &str) -> Instance {
        let mut env = self.env.clone();
        env.push(("ORDERS_ROLE", role.into()));
        env.push(("ORDERS_ADDR", "127.0.0.1:0".into()));
        Instance::spawn(
            env!("CARGO_BIN_EXE_orders"),
            &["orders listening on "],
            &ORDERS_ENV,
            &env,
        )
        .await
    }
}

fn schema_name() -> String {
    unique_prefix("orders_t").replace('-', "_").to_lowercase()
}

async fn post(instance: &Instance, path: &str, body: Value) -> Reply {
    send(
        Method::POST,
        &instance.url(path),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn get(instance: &Instance, path: &str) -> Value {
    let reply = send(Method::GET, &instance.url(path), &[], "").await;
    assert_eq!(
        reply.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// What the API said it committed: every event id with its order, and the expected read model.
#[derive(Default)]
struct Ledger {
    /// order id → the event ids committed for it, in order.
    events: BTreeMap<String, Vec<String>>,
    /// Event ids of writes that failed on purpose (never to appear).
    rolled_back_orders: HashSet<String>,
    customers: HashMap<String, [i64; 4]>,
}

impl Ledger {
    async fn place(
        &mut self,
        api: &Instance,
        order: &str,
        customer: &str,
        amount: i64,
        fail: bool,
    ) {
        let path = if fail {
            "/orders?fail=after_write"
        } else {
            "/orders"
        };
        let reply = post(
            api,
            path,
            json!({"order_id": order, "customer_id": customer, "amount_cents": amount}),
        )
        .await;
        if fail {
            reply.assert_problem(500);
            self.rolled_back_orders.insert(order.to_owned());
            return;
        }
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let json = reply.json();
        assert_eq!(json["order_id"], order);
        self.events
            .entry(order.to_owned())
            .or_default()
            .push(json["event_id"].as_str().unwrap().to_owned());
        self.customers.entry(customer.to_owned()).or_default()[0] += 1;
    }

    async fn act(&mut self, api: &Instance, order: &str, customer: &str, amount: i64, pay: bool) {
        let path = format!("/orders/{order}/{}", if pay { "pay" } else { "cancel" });
        let reply = post(api, &path, json!({})).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let json = reply.json();
        assert_eq!(json["status"], if pay { "paid" } else { "cancelled" });
        self.events
            .entry(order.to_owned())
            .or_default()
            .push(json["event_id"].as_str().unwrap().to_owned());
        let counts = self.customers.entry(customer.to_owned()).or_default();
        if pay {
            counts[1] += 1;
            counts[3] += amount;
        } else {
            counts[2] += 1;
        }
    }

    fn committed(&self) -> usize {
        self.events.values().map(Vec::len).sum()
    }
}

/// Polls until `/outbox` says nothing is pending and every customer's read model matches the
/// ledger (or panics after 60 s, with the last answers).
async fn converge(api: &Instance, ledger: &Ledger) {
    let mut last = (Value::Null, Value::Null);
    for _ in 0..600 {
        let outbox = get(api, "/outbox").await;
        let mut all_match = outbox["pending"] == 0;
        for (customer, [placed, paid, cancelled, total]) in &ledger.customers {
            let model = get(api, &format!("/customers/{customer}")).await;
            let expected = json!({
                "customer_id": customer,
                "orders_placed": placed,
                "orders_paid": paid,
                "orders_cancelled": cancelled,
                "total_paid_cents": total,
            });
            if model != expected {
                all_match = false;
                last.1 = json!({"got": model, "want": expected});
            }
        }
        last.0 = outbox;
        if all_match {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "did not converge in 60 s: outbox {} / read model {}",
        last.0, last.1
    );
}

/// Each committed event exactly once, in per-order sequence order, nothing else: checks the
/// stream's (event id, order id, sequence, body) list against the ledger.
fn assert_stream_matches(ledger: &Ledger, stream: &[(String, String, i64, Value)]) {
    let ids: Vec<&str> = stream.iter().map(|e| e.0.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice in the stream");
    assert_eq!(
        ids.len(),
        ledger.committed(),
        "every committed event in the stream"
    );
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, order, sequence, body) in stream {
        assert!(
            !ledger.rolled_back_orders.contains(order),
            "a rolled-back order's event: {id}"
        );
        let so_far = seen.entry(order).or_default();
        assert_eq!(
            *sequence,
            so_far.len() as i64 + 1,
            "order {order}: sequence in order"
        );
        so_far.push(id);
        assert_eq!(body["event_id"], id.as_str());
        assert_eq!(body["aggregate_id"], order.as_str());
        assert_eq!(body["sequence"], *sequence);
    }
    for (order, events) in &ledger.events {
        let got: Vec<String> = seen
            .get(order.as_str())
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(&got, events, "order {order}: its events, in commit order");
    }
}

/// The JetStream stream's messages: (Nats-Msg-Id, Palisade-Aggregate-Id, Palisade-Sequence,
/// body), checking subject and body shape.
async fn read_jetstream(server: &NatsServer, name: &str) -> Vec<(String, String, i64, Value)> {
    let client = async_nats::connect(server.url()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream(name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut all = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| {
            let found = match name {
                "Nats-Msg-Id" => message.headers.get(async_nats::header::NATS_MESSAGE_ID),
                custom => message.headers.get(custom),
            };
            found
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("message {seq} without {name}"))
        };
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("orders.{}", body["event_type"].as_str().unwrap())
        );
        for field in [
            "event_id",
            "event_type",
            "aggregate_id",
            "sequence",
            "occurred_at",
            "data",
        ] {
            assert!(!body[field].is_null(), "body without {field}: {body}");
        }
        all.push((
            header("Nats-Msg-Id"),
            header("Palisade-Aggregate-Id"),
            header("Palisade-Sequence").parse().unwrap(),
            body,
        ));
    }
    all
}

/// The header `name` of the stream message whose `Nats-Msg-Id` is `event_id`.
async fn header_of(
    server: &NatsServer,
    stream: &str,
    event_id: &str,
    name: &str,
) -> Option<String> {
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.ok()?;
        let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID)?;
        if id.as_str() == event_id {
            return message.headers.get(name).map(|v| v.as_str().to_owned());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_contract_on_one_instance() {
    let server = NatsServer::start();
    let deployment = Deployment::nats(&server);
    let app = deployment.start("all").await;
    let mut ledger = Ledger::default();

    ledger.place(&app, "o-1", "c-1", 500, false).await;
    // 409 for an existing order, 422 for invalid input (problem+json).
    post(
        &app,
        "/orders",
        json!({"order_id": "o-1", "customer_id": "c-1", "amount_cents": 500}),
    )
    .await
    .assert_problem(409);
    for bad in [
        json!({"customer_id": "c-1", "amount_cents": 5}),
        json!({"order_id": "o-x", "customer_id": "c-1", "amount_cents": -5}),
        json!({"order_id": "o-x", "customer_id": "c-1", "amount_cents": "5"}),
        json!({"order_id": "o x", "customer_id": "c-1", "amount_cents": 5}),
        json!({"order_id": "o-x\r\nX: y", "customer_id": "c-1", "amount_cents": 5}),
        json!(["not", "an", "object"]),
    ] {
        post(&app, "/orders", bad).await.assert_problem(422);
    }
    send(Method::POST, &app.url("/orders"), &[], "{not json")
        .await
        .assert_problem(422);
    send(Method::POST, &app.url("/orders"), &[], vec![0xffu8, 0xfe])
        .await
        .assert_problem(422);
    // Written, then failed before commit: nothing committed, nothing ever published.
    ledger.place(&app, "o-2", "c-1", 700, true).await;
    send(Method::GET, &app.url("/orders/o-2"), &[], "")
        .await
        .assert_problem(404);

    let order = get(&app, "/orders/o-1").await;
    assert_eq!(
        order,
        json!({"order_id": "o-1", "customer_id": "c-1", "status": "placed", "amount_cents": 500})
    );
    ledger.act(&app, "o-1", "c-1", 500, true).await;
    post(&app, "/orders/o-1/pay", json!({}))
        .await
        .assert_problem(409);
    post(&app, "/orders/o-1/cancel", json!({}))
        .await
        .assert_problem(409);
    post(&app, "/orders/nope/pay", json!({}))
        .await
        .assert_problem(404);
    post(&app, "/orders/nope/cancel", json!({}))
        .await
        .assert_problem(404);
    ledger.place(&app, "o-3", "c-2", 900, false).await;
    ledger.act(&app, "o-3", "c-2", 900, false).await;
    assert_eq!(get(&app, "/orders/o-3").await["status"], "cancelled");
    assert_eq!(get(&app, "/orders/o-1").await["status"], "paid");

    // Trace context travels from the request through the outbox to the broker's headers.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = send(
        Method::POST,
        &app.url("/orders"),
        &[
            ("content-type", "application/json"),
            ("traceparent", traceparent),
        ],
        json!({"order_id": "o-t", "customer_id": "c-3", "amount_cents": 5}).to_string(),
    )
    .await;
    assert_eq!(traced.status, 201);
    let traced_id = traced.json()["event_id"].as_str().unwrap().to_owned();
    ledger.events.insert("o-t".into(), vec![traced_id.clone()]);
    ledger.customers.insert("c-3".into(), [1, 0, 0, 0]);

    converge(&app, &ledger).await;
    let outbox = get(&app, "/outbox").await;
    assert_eq!(outbox["pending"], 0);
    assert_eq!(outbox["published"], 5);
    assert_eq!(
        header_of(&server, &deployment.stream, &traced_id, "traceparent")
            .await
            .as_deref(),
        Some(traceparent)
    );
    assert_eq!(outbox["dead_letters"], 0);
    assert!(outbox["oldest_pending_age_ms"].is_u64());
    assert_eq!(
        get(&app, "/customers/c-1").await,
        json!({"customer_id": "c-1", "orders_placed": 1, "orders_paid": 1, "orders_cancelled": 0, "total_paid_cents": 500})
    );
    let stream = read_jetstream(&server, &deployment.stream).await;
    assert_stream_matches(&ledger, &stream);
    assert_eq!(stream[0].3["event_type"], "order.placed");
    assert_eq!(stream[0].3["data"]["customer_id"], "c-1");
}

/// The whole fleet as separate processes: two API instances, two relays, a projector. The
/// projector and the relays are SIGKILLed and restarted mid-run (the relays once while the
/// broker is down), and the broker is killed and restarted; afterwards the stream holds every committed event exactly once in per-order
/// order, nothing of the rolled-back writes, the read model equals what the committed
/// operations imply, and `pending` is back to 0 by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_once_through_kills_and_a_broker_restart() {
    let mut server = NatsServer::start();
    let deployment = Deployment::nats(&server);
    let apis = [deployment.start("api").await, deployment.start("api").await];
    let mut relays = vec![
        deployment.start("relay").await,
        deployment.start("relay").await,
    ];
    let mut projector = Some(deployment.start("projector").await);
    let mut ledger = Ledger::default();
    for i in 0..60 {
        let api = &apis[i % 2];
        let (order, customer, amount) = (format!("o-{i}"), format!("c-{}", i % 4), 100 + i as i64);
        ledger
            .place(api, &order, &customer, amount, i % 7 == 3)
            .await;
        if i % 7 != 3 && i % 3 == 0 {
            ledger
                .act(&apis[(i + 1) % 2], &order, &customer, amount, i % 2 == 0)
                .await;
        }
        if (30..40).contains(&i) {
            // The broker is down: writes go on, the relays wait it out.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        match i {
            12 => drop(projector.take()), // SIGKILL
            18 => projector = Some(deployment.start("projector").await),
            24 => {
                relays.remove(0); // SIGKILL
                relays.push(deployment.start("relay").await);
            }
            30 => server.kill(),
            35 => {
                // Relays killed while the broker is down: what they had sent into the void
                // (or buffered in the client) must not count as published.
                relays.clear();
                relays.push(deployment.start("relay").await);
                relays.push(deployment.start("relay").await);
            }
            40 => server.restart(),
            46 => {
                drop(projector.take());
                projector = Some(deployment.start("projector").await);
            }
            _ => {}
        }
    }
    converge(&apis[0], &ledger).await;
    let stream = read_jetstream(&server, &deployment.stream).await;
    assert_stream_matches(&ledger, &stream);
    assert_eq!(get(&apis[1], "/outbox").await["dead_letters"], 0);
}

/// The same over Redis Streams: the relay's script adds each event once, the projector's
/// consumer group reclaims what a killed projector left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_through_kills() {
    use palisade::core::redis::{Arg, RedisClient, Reply as RedisReply};
    let deployment = Deployment::redis();
    let api = deployment.start("api").await;
    let mut relays = vec![
        deployment.start("relay").await,
        deployment.start("relay").await,
    ];
    let mut projector = Some(deployment.start("projector").await);
    let mut ledger = Ledger::default();
    for i in 0..30 {
        let (order, customer, amount) = (format!("o-{i}"), format!("c-{}", i % 3), 10 + i as i64);
        ledger
            .place(&api, &order, &customer, amount, i % 9 == 4)
            .await;
        if i % 9 != 4 && i % 2 == 0 {
            ledger
                .act(&api, &order, &customer, amount, i % 4 == 0)
                .await;
        }
        match i {
            8 => drop(projector.take()),
            12 => projector = Some(deployment.start("projector").await),
            16 => {
                relays.remove(0);
                relays.push(deployment.start("relay").await);
            }
            _ => {}
        }
    }
    converge(&api, &ledger).await;
    let client = palisade_testkit::connect_url(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    let bytes = |s: &str| Arg::Bytes(bytes::Bytes::copy_from_slice(s.as_bytes()));
    let reply = client
        .command(
            "XRANGE",
            &[bytes(&deployment.stream), bytes("-"), bytes("+")],
        )
        .await
        .unwrap();
    let RedisReply::Array(entries) = reply else {
        panic!("{reply:?}")
    };
    let stream: Vec<(String, String, i64, Value)> = entries
        .into_iter()
        .map(|entry| {
            let RedisReply::Array(mut parts) = entry else {
                panic!()
            };
            let Some(RedisReply::Array(fields)) = parts.pop() else {
                panic!()
            };
            let fields: HashMap<String, String> = fields
                .chunks(2)
                .map(|pair| match pair {
                    [RedisReply::Bytes(k), RedisReply::Bytes(v)] => (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ),
                    other => panic!("{other:?}"),
                })
                .collect();
            let sequence: i64 = fields["sequence"].parse().unwrap();
            let body = json!({
                "event_id": fields["event_id"],
                "aggregate_id": fields["aggregate_id"],
                "sequence": sequence,
            });
            (
                fields["event_id"].clone(),
                fields["aggregate_id"].clone(),
                sequence,
                body,
            )
        })
        .collect();
    assert_stream_matches(&ledger, &stream);
}

/// Polls `GET /checkouts/{id}` until its state is terminal (60 s at most).
async fn checkout_done(instance: &Instance, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let reply = get_reply(instance, &format!("/checkouts/{id}")).await;
        if reply.status == 200 {
            last = reply.json();
            if ["completed", "compensated", "failed"]
                .contains(&last["state"].as_str().unwrap_or(""))
            {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("checkout {id} did not finish in 60 s: {last}");
}

async fn get_reply(instance: &Instance, path: &str) -> Reply {
    send(Method::GET, &instance.url(path), &[], "").await
}

/// The fake services' effect counts of one checkout: (service, action) → count.
async fn effects_of(instance: &Instance, checkout: &str) -> BTreeMap<(String, String), i64> {
    let all = get(instance, "/effects").await;
    let mut counts = BTreeMap::new();
    for service in ["inventory", "payments", "shipping"] {
        if let Some(actions) = all[service][checkout].as_object() {
            for (action, n) in actions {
                counts.insert((service.to_owned(), action.clone()), n.as_i64().unwrap());
            }
        }
    }
    counts
}

fn counts(expected: &[(&str, &str)]) -> BTreeMap<(String, String), i64> {
    expected
        .iter()
        .map(|(s, a)| ((s.to_string(), a.to_string()), 1))
        .collect()
}

async fn start_checkout(instance: &Instance, id: &str, fail_at: &str, delay_ms: u64) {
    let reply = post(
        instance,
        "/checkouts",
        json!({"checkout_id": id, "order_id": "o-1", "fail_at": fail_at, "step_delay_ms": delay_ms}),
    )
    .await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json(), json!({"checkout_id": id, "state": "running"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_complete_or_compensate_in_reverse() {
    let server = NatsServer::start();
    let app = Deployment::nats(&server).start("all").await;
    for (id, fail_at) in [
        ("co-none", "none"),
        ("co-reserve", "reserve"),
        ("co-charge", "charge"),
        ("co-ship", "ship"),
    ] {
        start_checkout(&app, id, fail_at, 0).await;
    }
    let done = checkout_done(&app, "co-none").await;
    assert_eq!(done["state"], "completed");
    let steps: Vec<(String, String)> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("reserve".into(), "done".into()),
            ("charge".into(), "done".into()),
            ("ship".into(), "done".into())
        ]
    );
    assert_eq!(
        effects_of(&app, "co-none").await,
        counts(&[
            ("inventory", "reserve"),
            ("payments", "charge"),
            ("shipping", "ship")
        ])
    );
    let reserve = checkout_done(&app, "co-reserve").await;
    assert_eq!(reserve["state"], "compensated");
    assert_eq!(reserve["steps"][0]["status"], "failed");
    assert!(
        effects_of(&app, "co-reserve").await.is_empty(),
        "nothing happened, nothing undone"
    );
    assert_eq!(
        checkout_done(&app, "co-charge").await["state"],
        "compensated"
    );
    assert_eq!(
        effects_of(&app, "co-charge").await,
        counts(&[("inventory", "reserve"), ("inventory", "release")])
    );
    let ship = checkout_done(&app, "co-ship").await;
    assert_eq!(ship["state"], "compensated");
    assert_eq!(ship["steps"][0]["status"], "compensated");
    assert_eq!(ship["steps"][1]["status"], "compensated");
    assert_eq!(ship["steps"][2]["status"], "failed");
    assert_eq!(
        effects_of(&app, "co-ship").await,
        counts(&[
            ("inventory", "reserve"),
            ("inventory", "release"),
            ("payments", "charge"),
            ("payments", "refund")
        ])
    );
    // The contract's refusals.
    post(
        &app,
        "/checkouts",
        json!({"checkout_id": "co-none", "order_id": "o-1"}),
    )
    .await
    .assert_problem(409);
    for bad in [
        json!({"order_id": "o-1"}),
        json!({"checkout_id": "x", "order_id": "o-1", "fail_at": "pay"}),
        json!({"checkout_id": "x", "order_id": "o-1", "step_delay_ms": -3}),
    ] {
        post(&app, "/checkouts", bad).await.assert_problem(422);
    }
    get_reply(&app, "/checkouts/nope").await.assert_problem(404);
}

/// The process is SIGKILLed mid-saga, twice (forwards, and around a failure and its
/// compensation); a restarted instance finishes or compensates each checkout, and no action
/// or compensation is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_killed_mid_saga_is_finished_by_the_next_instance() {
    let server = NatsServer::start();
    let deployment = Deployment::nats(&server);
    let first = deployment.start("all").await;
    start_checkout(&first, "co-fwd", "none", 700).await;
    start_checkout(&first, "co-back", "ship", 300).await;
    // Mid-charge for the first, around the shipping attempts for the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    drop(first); // SIGKILL
    let second = deployment.start("all").await;
    assert_eq!(checkout_done(&second, "co-fwd").await["state"], "completed");
    assert_eq!(
        effects_of(&second, "co-fwd").await,
        counts(&[
            ("inventory", "reserve"),
            ("payments", "charge"),
            ("shipping", "ship")
        ])
    );
    assert_eq!(
        checkout_done(&second, "co-back").await["state"],
        "compensated"
    );
    assert_eq!(
        effects_of(&second, "co-back").await,
        counts(&[
            ("inventory", "reserve"),
            ("inventory", "release"),
            ("payments", "charge"),
            ("payments", "refund")
        ])
    );
}
