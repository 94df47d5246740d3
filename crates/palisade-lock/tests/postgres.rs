//! PostgreSQL advisory locks on the real server: session locks owned by their connection,
//! nothing leaked into the pool, transaction locks released at commit and rollback, fencing.

use std::time::Duration;

use palisade_lock::{
    AdvisoryKey, LockError, Locker, PgAdvisoryLock, fencing::check_fence, held_advisory_locks,
    lock_xact, try_lock_xact,
};
use palisade_testkit::{FaultMode, FaultProxy, TestPostgres};

#[test]
fn keys_are_stable() {
    // The same name gives the same key in every process, release and language: pinned to
    // the first 8 bytes (big-endian, signed) of SHA-256(b"payments\0order-123"), as computed
    // by Python's hashlib.
    assert_eq!(
        AdvisoryKey::named("payments", "order-123"),
        AdvisoryKey::Single(-8_455_789_914_628_662_436)
    );
    assert_ne!(
        AdvisoryKey::named("payments", "order-123"),
        AdvisoryKey::named("refunds", "order-123")
    );
    assert_ne!(AdvisoryKey::named("a", "bc"), AdvisoryKey::named("ab", "c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_lock_contention_and_listing() {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema);
    let other = PgAdvisoryLock::new(pg.another_pool(2).await, &pg.schema);
    let guard = locks.try_acquire("order-1").await.unwrap().unwrap();
    assert!(other.try_acquire("order-1").await.unwrap().is_none());
    assert!(other.try_acquire("order-2").await.unwrap().is_some());
    let err = other
        .acquire("order-1", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err}");
    let held = held_advisory_locks(&pg.pool).await.unwrap();
    assert!(
        held.iter()
            .any(|l| l.key == locks.key("order-1") && l.granted)
    );
    assert!(guard.release().await.unwrap());
    assert!(other.try_acquire("order-1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_lock_gets_it_when_released() {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema);
    let guard = locks.try_acquire("w").await.unwrap().unwrap();
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire("w", Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    guard.release().await.unwrap();
    waiter
        .await
        .unwrap()
        .expect("granted after release")
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guard_leaks_nothing_into_the_pool() {
    let pg = TestPostgres::with_max_connections(1).await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema);
    let observer = PgAdvisoryLock::new(pg.another_pool(1).await, &pg.schema);
    for _ in 0..5 {
        let guard = locks.try_acquire("dropped").await.unwrap().unwrap();
        drop(guard);
        // The pool's only connection must come back without the lock.
        let mut got = None;
        for _ in 0..100 {
            got = observer.try_acquire("dropped").await.unwrap();
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.expect("the dropped guard's lock was freed")
            .release()
            .await
            .unwrap();
        let (locks_on_pool_conn,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        )
        .fetch_one(&pg.pool)
        .await
        .unwrap();
        assert_eq!(locks_on_pool_conn, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_lock_goes_with_its_connection() {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema)
        .with_ping_interval(Duration::from_millis(50));
    let other = PgAdvisoryLock::new(pg.another_pool(2).await, &pg.schema);
    let guard = locks.try_acquire("killed").await.unwrap().unwrap();
    let holder = held_advisory_locks(&pg.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.key == locks.key("killed"))
        .unwrap();
    // Regression (flaky): pg_terminate_backend returns before the backend has exited.
    pg.terminate(holder.pid).await;
    assert!(
        other.try_acquire("killed").await.unwrap().is_some(),
        "released with the session"
    );
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("the guard knows it lost the lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_locks_end_with_the_transaction() {
    let pg = TestPostgres::connect().await;
    let key = AdvisoryKey::Pair(7, 42);
    for commit in [true, false] {
        let mut tx = pg.pool.begin().await.unwrap();
        assert!(
            lock_xact(&mut tx, key, Duration::from_secs(1))
                .await
                .unwrap()
        );
        let mut rival = pg.pool.begin().await.unwrap();
        assert!(!try_lock_xact(&mut rival, key).await.unwrap());
        assert!(
            !lock_xact(&mut rival, key, Duration::from_millis(50))
                .await
                .unwrap()
        );
        rival.rollback().await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        let mut next = pg.pool.begin().await.unwrap();
        assert!(
            try_lock_xact(&mut next, key).await.unwrap(),
            "free after commit={commit}"
        );
        next.rollback().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_refuse_a_stale_writer() {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema).with_fencing();
    locks.migrate().await.unwrap();
    locks.migrate().await.unwrap();
    let a = locks.try_acquire("acct").await.unwrap().unwrap();
    let ta = a.fencing_token().unwrap();
    a.release().await.unwrap();
    let b = locks.try_acquire("acct").await.unwrap().unwrap();
    let tb = b.fencing_token().unwrap();
    assert!(tb > ta);
    let mut tx = pg.pool.begin().await.unwrap();
    assert!(check_fence(&mut tx, "acct", tb).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = pg.pool.begin().await.unwrap();
    assert!(
        !check_fence(&mut tx, "acct", ta).await.unwrap(),
        "the older holder is refused"
    );
    tx.rollback().await.unwrap();
    b.release().await.unwrap();
}

/// Polls (bounded) until `name` can be taken on `locks`: `true` if it could within `within`.
async fn eventually_free(locks: &PgAdvisoryLock, name: &str, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if let Ok(Some(guard)) = locks.try_acquire(name).await {
            guard.release().await.unwrap();
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Regression: a waiter dropped while `pg_advisory_lock` queued it went back to the pool; the
/// server then granted the lock to that pooled connection, and it was held with no guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_leaks_no_lock_into_the_pool() {
    let pg = TestPostgres::with_max_connections(1).await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema);
    let other = PgAdvisoryLock::new(pg.another_pool(2).await, &pg.schema);
    for round in 0..5 {
        let name = format!("queued-{round}");
        let holder = other.try_acquire(&name).await.unwrap().unwrap();
        // The waiter queues in PostgreSQL, then is cancelled.
        let waited = tokio::time::timeout(
            Duration::from_millis(150),
            locks.acquire(&name, Duration::from_secs(30)),
        )
        .await;
        assert!(waited.is_err(), "still waiting when cancelled");
        holder.release().await.unwrap();
        assert!(
            eventually_free(&other, &name, Duration::from_secs(5)).await,
            "round {round}: the cancelled waiter's connection was granted the lock"
        );
        // The pool (one connection) still works and holds nothing.
        let guard = locks.try_acquire("after").await.unwrap().unwrap();
        guard.release().await.unwrap();
    }
}

/// Regression: PostgreSQL lock calls had no deadline. Behind a black-holed connection the
/// watchdog's ping never returned, so the guard never reported the loss, while the server
/// dropped the session and another instance took the lock; `try_acquire` and `release` hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_is_lost_within_its_deadline() {
    let pg = TestPostgres::connect().await;
    let proxy = FaultProxy::start(pg.server_addr().await).await;
    let locks = PgAdvisoryLock::new(pg.pool_via(proxy.addr(), 2).await, &pg.schema)
        .with_ping_interval(Duration::from_millis(100))
        .with_statement_timeout(Duration::from_millis(200));
    let other = PgAdvisoryLock::new(pg.another_pool(2).await, &pg.schema);
    let guard = locks.try_acquire("bh").await.unwrap().unwrap();
    let pid = held_advisory_locks(&pg.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.key == locks.key("bh") && l.granted)
        .unwrap()
        .pid;
    proxy.set(FaultMode::BlackHole);
    // The server drops the session (as after a TCP timeout) and another instance takes over.
    pg.terminate(pid).await;
    let taker = other
        .try_acquire("bh")
        .await
        .unwrap()
        .expect("free on the server");
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the guard reports the loss within its ping deadline");
    // Nothing hangs behind the black hole: each call ends within its deadline.
    let started = tokio::time::Instant::now();
    let refused = locks.try_acquire("bh-2").await;
    assert!(matches!(refused, Err(LockError::Backend(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let _ = guard.release().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    taker.release().await.unwrap();
    proxy.set(FaultMode::Pass);
}

/// Fence rows may be pruned: a token issued after its row is gone is still above every earlier
/// one (tokens are seeded by the server clock), so per-name rows need not live forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_rows_can_be_pruned() {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema).with_fencing();
    locks.migrate().await.unwrap();
    let first = locks.try_acquire("order-7").await.unwrap().unwrap();
    let a = first.fencing_token().unwrap();
    first.release().await.unwrap();
    let second = locks.try_acquire("order-7").await.unwrap().unwrap();
    let b = second.fencing_token().unwrap();
    second.release().await.unwrap();
    assert!(b > a);
    sqlx::query("DELETE FROM palisade_lock_fences")
        .execute(&pg.pool)
        .await
        .unwrap();
    let third = locks.try_acquire("order-7").await.unwrap().unwrap();
    assert!(
        third.fencing_token().unwrap() > b,
        "a token below one already issued"
    );
    third.release().await.unwrap();
}
