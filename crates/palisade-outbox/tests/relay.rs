//! The relay over the real PostgreSQL: exactly the committed events, per-aggregate order with
//! several relays, rejections, dead letters, an unavailable sink, a relay dropped mid-batch.

mod common;

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

use common::{Db, RecordingSink, assert_per_aggregate_order};
use palisade_outbox::{DeadLetters, OutboxStats, Relay, RelayConfig, SinkError};

fn config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.batch_size = 16;
    config.poll_interval = Duration::from_millis(50);
    config.backoff_base = Duration::from_millis(5);
    config.backoff_cap = Duration::from_millis(20);
    config.max_attempts = 3;
    config
}

/// Drains the outbox with `relay` (relay_batch until nothing is claimed and nothing pends).
async fn drain(db: &Db, relay: &Relay<RecordingSink>) {
    for _ in 0..500 {
        let report = relay.relay_batch().await.unwrap();
        if report.claimed == 0 && db.pending().await == 0 {
            return;
        }
        if report.claimed == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("the outbox did not drain: {} pending", db.pending().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_committed_events_are_published_each_once() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config());
    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    for i in 0..30 {
        let aggregate = format!("o-{}", i % 7);
        if i % 4 == 3 {
            rolled_back.push(db.write(&aggregate, "order.placed", true).await);
        } else {
            committed.push(db.write(&aggregate, "order.placed", false).await);
        }
    }
    drain(&db, &relay).await;
    let ids = sink.received.ids();
    assert_eq!(ids.len(), committed.len(), "each committed event once");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        committed.iter().collect::<HashSet<_>>()
    );
    assert!(rolled_back.iter().all(|id| !ids.contains(id)));
    // Sequence numbers have no gaps: the rolled-back writes gave theirs back.
    assert_per_aggregate_order(&sink.received.all());
    let stats = OutboxStats::read(db.pool(), &db.schema).await.unwrap();
    assert_eq!(
        (stats.pending, stats.published),
        (0, committed.len() as u64)
    );
}

/// Many writers and four relays at once, the sink slow and jittery: every aggregate's events
/// still reach it in sequence, each committed event exactly once (the recording sink has no
/// dedup, so a duplicate would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_relays_keep_every_aggregates_order() {
    for round in 0..3 {
        let db = Db::new().await;
        let sink = RecordingSink {
            max_delay_ms: 3,
            ..RecordingSink::default()
        };
        let relays: Vec<_> = (0..4)
            .map(|_| Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config()))
            .collect();
        let stop = tokio_util_like_stop();
        let running: Vec<_> = relays
            .iter()
            .cloned()
            .map(|relay| {
                let stop = stop.clone();
                tokio::spawn(async move { relay.run(stop.wait()).await })
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let pool = db.pool().clone();
                let outbox = db.outbox.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..40 {
                        let aggregate = format!("o-{}", (i + w) % 5);
                        let mut tx = pool.begin().await.unwrap();
                        let e = outbox
                            .enqueue(
                                &mut tx,
                                palisade_outbox::NewEvent::new(
                                    "order",
                                    aggregate,
                                    "order.changed",
                                    serde_json::json!({}),
                                ),
                            )
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                        ids.push(e.id.to_string());
                    }
                    ids
                })
            })
            .collect();
        let mut committed = HashSet::new();
        for writer in writers {
            committed.extend(writer.await.unwrap());
        }
        for _ in 0..400 {
            if db.pending().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop.fire();
        for r in running {
            r.await.unwrap().unwrap();
        }
        let received = sink.received.all();
        assert_eq!(db.pending().await, 0, "round {round}: drained");
        assert_eq!(
            received.len(),
            committed.len(),
            "round {round}: exactly once"
        );
        assert_per_aggregate_order(&received);
    }
}

/// A rejected event holds back its aggregate's later events while it is retried, then is
/// parked after `max_attempts` — and the later events follow. Other aggregates never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_after_max_attempts() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    // Backoffs long enough that the poison event is often not claimable while o-1's next
    // event is: only the order rule holds the next one back then.
    let mut config = config();
    config.backoff_base = Duration::from_millis(200);
    config.backoff_cap = Duration::from_millis(200);
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config);
    let poison = db.write("o-1", "order.placed", false).await;
    let next = db.write("o-1", "order.paid", false).await;
    let other = db.write("o-2", "order.placed", false).await;
    sink.verdict
        .lock()
        .unwrap()
        .insert(poison.clone(), SinkError::Rejected("too large".into()));
    let first = relay.relay_batch().await.unwrap();
    assert_eq!((first.published, first.rejected), (1, 1), "{first:?}");
    assert_eq!(sink.received.ids(), vec![other.clone()]);
    // While the poison event is retried, its aggregate's next event waits.
    let dead = DeadLetters::new(db.schema.clone());
    for _ in 0..400 {
        if !dead.list(db.pool(), 10).await.unwrap().is_empty() {
            break;
        }
        assert_eq!(
            sink.received.ids(),
            vec![other.clone()],
            "o-1's next event waited"
        );
        relay.relay_batch().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drain(&db, &relay).await;
    assert_eq!(sink.received.ids(), vec![other, next]);
    let letters = dead.list(db.pool(), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, poison);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].error, "too large");
    // Replayed after the fix, it is published.
    sink.verdict.lock().unwrap().clear();
    assert!(dead.replay(db.pool(), &poison).await.unwrap());
    drain(&db, &relay).await;
    assert_eq!(sink.received.ids().last(), Some(&poison));
    let stats = OutboxStats::read(db.pool(), &db.schema).await.unwrap();
    assert_eq!((stats.pending, stats.dead_letters), (0, 0));
}

/// An unavailable sink is waited out: nothing is dead-lettered however long it lasts, and
/// everything goes once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_sink_never_dead_letters() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    sink.unavailable.store(true, Ordering::SeqCst);
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(db.write(&format!("o-{i}"), "order.placed", false).await);
    }
    for _ in 0..10 {
        let report = relay.relay_batch().await.unwrap();
        assert!(report.unavailable.is_some());
        assert_eq!(report.dead_lettered, 0);
    }
    let stats = OutboxStats::read(db.pool(), &db.schema).await.unwrap();
    assert_eq!((stats.pending, stats.dead_letters), (5, 0));
    sink.unavailable.store(false, Ordering::SeqCst);
    drain(&db, &relay).await;
    assert_eq!(sink.received.ids().len(), 5);
}

/// NOTIFY wakes a running relay within the poll interval's fraction: with a 10 s poll
/// interval, events still go out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_relay_without_polling() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    let mut config = config();
    config.poll_interval = Duration::from_secs(10);
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config);
    let stop = tokio_util_like_stop();
    let running = {
        let (relay, stop) = (relay.clone(), stop.clone());
        tokio::spawn(async move { relay.run(stop.wait()).await })
    };
    // A first event, published by the relay's first batch, shows it is running — and it
    // listens before its first batch — so the next commit's NOTIFY reaches it.
    let first = db.write("o-0", "order.placed", false).await;
    for _ in 0..500 {
        if sink.received.ids().contains(&first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sink.received.ids().contains(&first), "the relay runs");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = db.write("o-1", "order.placed", false).await;
    let mut seen = false;
    for _ in 0..100 {
        if sink.received.ids().contains(&id) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.fire();
    running.await.unwrap().unwrap();
    assert!(
        seen,
        "published within 2 s although the poll interval is 10 s"
    );
}

/// A relay whose batch is dropped after the sink took the events (killed before its commit)
/// leaves them unpublished: the next relay publishes them again (the sink's dedup is what
/// makes that harmless; see the JetStream tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dropped_mid_batch_loses_nothing() {
    let db = Db::new().await;
    let slow = RecordingSink {
        max_delay_ms: 0,
        ..RecordingSink::default()
    };
    let id = db.write("o-1", "order.placed", false).await;
    let stuck = HangingSink(slow.clone());
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), stuck, config());
    let batch = tokio::spawn(async move { relay.relay_batch().await });
    // Dropped once the sink has the event (killed after the broker's ack, before its commit).
    for _ in 0..500 {
        if !slow.received.ids().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    batch.abort();
    assert!(
        batch.await.unwrap_err().is_cancelled(),
        "the batch hung after publishing"
    );
    assert_eq!(slow.received.ids(), vec![id.clone()]);
    let sink = RecordingSink::default();
    let next = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config());
    drain(&db, &next).await;
    assert_eq!(sink.received.ids(), vec![id]);
}

/// Publishes through the inner sink, then never answers (a relay stuck or killed after the
/// broker's ack).
struct HangingSink(RecordingSink);

impl palisade_outbox::Sink for HangingSink {
    async fn publish(&self, events: &[palisade_outbox::OutboxEvent]) -> Vec<Result<(), SinkError>> {
        let _ = self.0.publish(events).await;
        std::future::pending().await
    }
}

/// A one-shot stop signal for `run`.
#[derive(Clone)]
struct Stop(
    std::sync::Arc<tokio::sync::Notify>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

fn tokio_util_like_stop() -> Stop {
    Stop(Default::default(), Default::default())
}

impl Stop {
    fn fire(&self) {
        self.1.store(true, Ordering::SeqCst);
        self.0.notify_waiters();
    }

    async fn wait(self) {
        loop {
            let notified = self.0.notified();
            if self.1.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Published rows past retention are deleted; pending ones never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_only_published_rows_past_retention() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    let mut config = config();
    config.retention = Some(Duration::from_millis(1));
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config);
    for i in 0..3 {
        db.write(&format!("o-{i}"), "order.placed", false).await;
    }
    drain(&db, &relay).await;
    sink.unavailable.store(true, Ordering::SeqCst);
    db.write("o-9", "order.placed", false).await;
    relay.relay_batch().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(relay.prune().await.unwrap(), 3);
    let stats = OutboxStats::read(db.pool(), &db.schema).await.unwrap();
    assert_eq!((stats.pending, stats.published), (1, 0));
    assert!(stats.oldest_pending_age > Duration::ZERO);
}

/// Regression: a replayed dead letter gets a new (last) position while its aggregate's later
/// events wait in front of it; with more of them than a batch, every claim window was full of
/// blocked rows and the outbox stalled for good. Blocked rows are now left out before the
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_behind_a_full_window_still_goes_first() {
    let db = Db::new().await;
    let sink = RecordingSink::default();
    let mut config = config();
    config.batch_size = 4;
    config.max_attempts = 1;
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink.clone(), config);
    let first = db.write("o-1", "order.placed", false).await;
    sink.verdict
        .lock()
        .unwrap()
        .insert(first.clone(), SinkError::Rejected("poison".into()));
    relay.relay_batch().await.unwrap();
    let dead = DeadLetters::new(db.schema.clone());
    assert_eq!(dead.list(db.pool(), 10).await.unwrap().len(), 1);
    // Ten later events of o-1 wait (the sink is down), then the fixed event is replayed.
    sink.unavailable.store(true, Ordering::SeqCst);
    let mut later = Vec::new();
    for _ in 0..10 {
        later.push(db.write("o-1", "order.changed", false).await);
    }
    relay.relay_batch().await.unwrap();
    sink.verdict.lock().unwrap().clear();
    assert!(dead.replay(db.pool(), &first).await.unwrap());
    sink.unavailable.store(false, Ordering::SeqCst);
    drain(&db, &relay).await;
    let mut expected = later.clone();
    expected.sort();
    let received = sink.received.ids();
    assert_eq!(received.len(), 11);
    let mut tail = received[1..].to_vec();
    tail.sort();
    assert_eq!(tail, expected);
    assert!(received[1..].len() == 10);
    // The replayed event went first: it holds the lowest sequence.
    assert_eq!(received[0], first);
}

/// A sink that answers no results leaves the events pending (never published, no panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_answering_too_few_results_publishes_nothing() {
    struct Mute;
    impl palisade_outbox::Sink for Mute {
        async fn publish(&self, _: &[palisade_outbox::OutboxEvent]) -> Vec<Result<(), SinkError>> {
            Vec::new()
        }
    }
    let db = Db::new().await;
    db.write("o-1", "order.placed", false).await;
    db.write("o-1", "order.paid", false).await;
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), Mute, config());
    let report = relay.relay_batch().await.unwrap();
    assert_eq!(report.published, 0);
    assert!(report.unavailable.is_some());
    assert_eq!(db.pending().await, 2);
}
