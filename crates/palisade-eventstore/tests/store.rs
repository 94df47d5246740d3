//! The event store over the real PostgreSQL: optimistic concurrency, a global order that never
//! skips a late commit (where the naive one does), snapshots, upcasting, the command service
//! under contention, projections with failover-safe checkpoints and rebuilds.

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{Account, AccountCommand, AccountError, Balances, store};
use palisade_eventstore::{
    CommandError, CommandRequest, CommandService, NewStored, Position, ProjectionRunner,
    Repository, StoreError, Upcasters,
};
use serde_json::json;
use tower::{Service, ServiceExt};

fn deposit(n: i64) -> NewStored {
    NewStored {
        event_type: "account.deposited".into(),
        schema_version: 1,
        payload: json!({"Deposited": {"amount_cents": n}}),
        metadata: json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_check_the_expected_version_and_leave_the_transaction_usable() {
    let (_pg, store) = store().await;
    let mut tx = store.pool().begin().await.unwrap();
    assert_eq!(
        store
            .append(&mut tx, "a-1", "account", 0, &[deposit(1), deposit(2)])
            .await
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    for stale in [0, 1, 3] {
        match store
            .append(&mut tx, "a-1", "account", stale, &[deposit(3)])
            .await
        {
            Err(StoreError::Conflict { expected, actual }) => {
                assert_eq!((expected, actual), (stale, 2))
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    // Nothing was written, and the transaction still works.
    assert_eq!(
        store
            .append(&mut tx, "a-1", "account", 2, &[deposit(3)])
            .await
            .unwrap(),
        3
    );
    tx.commit().await.unwrap();
    let events = store.read_stream("a-1", 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(store.read_stream("a-1", 2).await.unwrap().len() == 1);
    let mut tx = store.pool().begin().await.unwrap();
    assert!(matches!(
        store.append(&mut tx, "", "account", 0, &[deposit(1)]).await,
        Err(StoreError::Invalid(_))
    ));
}

/// Many appenders at the same expected version: exactly one wins each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_appends_at_one_version_exactly_one_wins() {
    let (_pg, store) = store().await;
    for round in 0..20u64 {
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut tx = store.pool().begin().await.unwrap();
                    match store
                        .append(&mut tx, "hot", "account", round, &[deposit(1)])
                        .await
                    {
                        Ok(_) => {
                            tx.commit().await.unwrap();
                            true
                        }
                        Err(StoreError::Conflict { .. }) => false,
                        Err(other) => panic!("{other}"),
                    }
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += t.await.unwrap() as usize;
        }
        assert_eq!(wins, 1, "round {round}");
    }
    assert_eq!(store.read_stream("hot", 0).await.unwrap().len(), 20);
}

/// The naive reader ("position > checkpoint") skips an event whose transaction took its
/// position first and committed last; `read_all` holds back until it has committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped_where_the_naive_reader_skips_it() {
    let (_pg, store) = store().await;
    let naive = |after: i64| {
        let store = store.clone();
        async move {
            let positions: Vec<i64> = sqlx::query_scalar(&format!(
                "SELECT global_position FROM {} WHERE global_position > $1 ORDER BY global_position",
                store.schema().table("events")
            ))
            .bind(after)
            .fetch_all(store.pool())
            .await
            .unwrap();
            positions
        }
    };
    // A takes a position first and stays open; B takes the next one and commits.
    let mut a = store.pool().begin().await.unwrap();
    store
        .append(&mut a, "slow", "account", 0, &[deposit(1)])
        .await
        .unwrap();
    let mut b = store.pool().begin().await.unwrap();
    store
        .append(&mut b, "fast", "account", 0, &[deposit(2)])
        .await
        .unwrap();
    b.commit().await.unwrap();

    let naive_seen = naive(0).await;
    assert_eq!(naive_seen.len(), 1, "the naive reader sees B");
    let naive_checkpoint = naive_seen[0];
    let ours = store.read_all(Position::START, 100).await.unwrap();
    assert!(ours.is_empty(), "ours waits while A is open: {ours:?}");

    a.commit().await.unwrap();
    assert!(
        naive(naive_checkpoint).await.is_empty(),
        "the naive reader lost A's event"
    );
    let ours = store.read_all(Position::START, 100).await.unwrap();
    let streams: Vec<&str> = ours.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, vec!["slow", "fast"], "both, in transaction order");
}

/// Eight writers whose transactions overlap at random, and a reader checkpointing as it
/// goes: the reader sees every committed event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointing_reader_sees_every_event_once_under_concurrent_writers() {
    let (_pg, store) = store().await;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40u64 {
                    let mut tx = store.pool().begin().await.unwrap();
                    store
                        .append(&mut tx, &format!("s-{w}"), "account", i, &[deposit(1)])
                        .await
                        .unwrap();
                    let pause = (w * 7 + i * 13) % 5;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut at = Position::START;
            let mut seen = Vec::new();
            // Until every event is seen — or 20 s after the writers finished: a transaction
            // open elsewhere in the database (another test's) legitimately holds the reader
            // back for a while, so "empty" does not mean "done".
            let mut deadline = None;
            loop {
                if done.load(Ordering::SeqCst) && deadline.is_none() {
                    deadline = Some(std::time::Instant::now() + Duration::from_secs(20));
                }
                let batch = store.read_all(at, 7).await.unwrap();
                if let Some(last) = batch.last() {
                    assert!(last.position > at);
                    at = last.position;
                }
                seen.extend(batch.into_iter().map(|e| (e.stream_id, e.version)));
                if seen.len() >= 8 * 40 || deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert_eq!(seen.len(), 8 * 40, "every event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_shortcut_the_replay_and_a_bad_one_falls_back() {
    let (_pg, store) = store().await;
    let accounts = Repository::<Account>::new(store.clone()).snapshot_every(10);
    for _ in 0..25 {
        accounts
            .execute("a-1", AccountCommand::Deposit(2), None)
            .await
            .unwrap();
    }
    let snapshot = store.load_snapshot("a-1").await.unwrap().unwrap();
    assert_eq!(snapshot.version, 20);
    let loaded = accounts.load("a-1").await.unwrap();
    assert_eq!((loaded.version, loaded.state.balance_cents), (25, 50));
    // Loaded from the snapshot: the snapshot's state had applied 20, plus 5 replayed.
    assert_eq!(loaded.state.applied, 25);
    // A snapshot of another schema version, or garbage, is ignored: full replay, same state.
    sqlx::query(&format!(
        "UPDATE {} SET state = '{{\"nonsense\": true}}'",
        store.schema().table("snapshots")
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let replayed = accounts.load("a-1").await.unwrap();
    assert_eq!((replayed.version, replayed.state.balance_cents), (25, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_upcast_on_read() {
    let (_pg, store) = store().await;
    // Written by an older release: `cents`, schema version 0.
    let mut tx = store.pool().begin().await.unwrap();
    let old = NewStored {
        event_type: "account.deposited".into(),
        schema_version: 0,
        payload: json!({"Deposited": {"cents": 700}}),
        metadata: json!({}),
    };
    store
        .append(&mut tx, "a-old", "account", 0, &[old])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let without = Repository::<Account>::new(store.clone());
    assert!(matches!(
        without.load("a-old").await,
        Err(StoreError::Decode { .. })
    ));
    let with = Repository::<Account>::new(store).upcasters(Upcasters::new().register(
        "account.deposited",
        0,
        |mut v| json!({"Deposited": {"amount_cents": v["Deposited"]["cents"].take()}}),
    ));
    assert_eq!(with.load("a-old").await.unwrap().state.balance_cents, 700);
}

/// 50 concurrent withdrawals of 100 from 1 000 through the tower service: exactly 10
/// succeed, the rest are refused for insufficient funds, the balance ends at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_withdrawals_never_overdraw() {
    let (_pg, store) = store().await;
    let accounts = Repository::<Account>::new(store.clone()).retries(200);
    accounts
        .execute("a-1", AccountCommand::Deposit(1000), None)
        .await
        .unwrap();
    let service = CommandService::new(accounts.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut service = service.clone();
            tokio::spawn(async move {
                service
                    .ready()
                    .await
                    .unwrap()
                    .call(CommandRequest {
                        stream_id: "a-1".into(),
                        command: AccountCommand::Withdraw(100),
                        expected_version: None,
                        command_id: None,
                    })
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(done) => {
                assert!(done.state.balance_cents >= 0);
                ok += 1;
            }
            Err(CommandError::Rejected(AccountError::InsufficientFunds)) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    assert_eq!(accounts.load("a-1").await.unwrap().state.balance_cents, 0);
    // An explicit stale version is refused, not retried.
    match accounts
        .execute("a-1", AccountCommand::Deposit(5), Some(3))
        .await
    {
        Err(CommandError::Conflict {
            expected: 3,
            actual: 11,
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// Two runners (two instances) over one projection while writers append: the read model ends
/// equal to the event-sourced balances, each event applied once; a rebuild gives the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_apply_each_event_once_across_runners_and_rebuild_the_same() {
    let (_pg, store) = store().await;
    let runners: Vec<_> = (0..2)
        .map(|_| {
            ProjectionRunner::new(store.clone())
                .with(Balances)
                .batch(5)
                .poll_interval(Duration::from_millis(5))
        })
        .collect();
    runners[0].prepare().await.unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let running: Vec<_> = runners
        .iter()
        .cloned()
        .map(|runner| {
            let stop = stop.clone();
            tokio::spawn(async move { runner.run(stop.notified_owned()).await })
        })
        .collect();
    let accounts = Repository::<Account>::new(store.clone());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let account = format!("a-{}", (w + i) % 5);
                    accounts
                        .execute(&account, AccountCommand::Deposit(i as i64 + 1), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let table = store.schema().table("balances");
    let read_model = || {
        let (store, table) = (store.clone(), table.clone());
        async move {
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
                "SELECT account_id, balance_cents, events FROM {table} ORDER BY account_id"
            ))
            .fetch_all(store.pool())
            .await
            .unwrap();
            rows
        }
    };
    let mut converged = false;
    for _ in 0..400 {
        if runners[0].status().await.unwrap()[0].lag == 0 {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.notify_waiters();
    for r in running {
        r.await.unwrap();
    }
    assert!(converged, "the projection caught up");
    let live = read_model().await;
    let mut expected = Vec::new();
    for a in 0..5 {
        let loaded = accounts.load(&format!("a-{a}")).await.unwrap();
        expected.push((
            format!("a-{a}"),
            loaded.state.balance_cents,
            loaded.version as i64,
        ));
    }
    assert_eq!(live, expected, "each event applied exactly once");
    let at = runners[1].rebuild("balances").await.unwrap();
    assert!(at > Position::START);
    assert_eq!(
        read_model().await,
        expected,
        "the rebuild equals the live read model"
    );
    assert_eq!(runners[0].status().await.unwrap()[0].lag, 0);
    assert!(runners[0].rebuild("nope").await.is_err());
}

/// A command id is carried out once: retried (also concurrently) it appends nothing and
/// answers what the first execution produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_an_id_is_carried_out_once() {
    let (_pg, store) = store().await;
    let accounts = Repository::<Account>::new(store.clone());
    accounts
        .execute("a-1", AccountCommand::Deposit(100), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                accounts
                    .execute_once("a-1", "withdraw-1", AccountCommand::Withdraw(30), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut firsts = 0;
    for t in tasks {
        let done = t.await.unwrap();
        assert_eq!(
            (done.version, done.state.balance_cents),
            (2, 70),
            "every answer is the first one's"
        );
        firsts += usize::from(!done.duplicate);
    }
    assert_eq!(firsts, 1);
    assert_eq!(accounts.load("a-1").await.unwrap().state.balance_cents, 70);
    // Later changes do not alter what the duplicate answers.
    accounts
        .execute("a-1", AccountCommand::Deposit(5), None)
        .await
        .unwrap();
    let again = accounts
        .execute_once("a-1", "withdraw-1", AccountCommand::Withdraw(30), None)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.version, again.state.balance_cents), (2, 70));
}

/// With `publish_to`, each appended event is enqueued in the outbox in the append's
/// transaction: a conflicting (rolled-back) append enqueues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_are_enqueued_in_the_outbox_with_the_append() {
    let (_pg, store) = store().await;
    store.schema().migrate(store.pool()).await.unwrap();
    let accounts = Repository::<Account>::new(store.clone())
        .publish_to(palisade_outbox::Outbox::new(store.schema().clone()));
    accounts
        .execute("a-1", AccountCommand::Deposit(10), None)
        .await
        .unwrap();
    accounts
        .execute("a-1", AccountCommand::Withdraw(4), None)
        .await
        .unwrap();
    assert!(
        accounts
            .execute("a-1", AccountCommand::Withdraw(4), Some(1))
            .await
            .is_err()
    );
    let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT aggregateid, type, sequence FROM {} ORDER BY sequence",
        store.schema().table("outbox")
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("a-1".into(), "account.deposited".into(), 1),
            ("a-1".into(), "account.withdrawn".into(), 2)
        ]
    );
}
