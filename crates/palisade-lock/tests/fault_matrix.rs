//! The fault matrix for locks: acquire, extend and release on Redis, and acquire and release
//! on PostgreSQL, each under every fault of `palisade_testkit::faults`. Once the fault heals:
//! never a second holder while a guard believes it holds the lock, no orphaned lock beyond the
//! documented bound, no call hanging past its deadline, no lock leaked into a pool.

use std::time::Duration;

use palisade_core::redis::RedisClient;
use palisade_lock::{Locker, PgAdvisoryLock, RedisLock, Redlock, held_advisory_locks};
use palisade_testkit::{
    TestPostgres,
    faults::{Fault, FaultRig, eventually},
};

const TTL: Duration = Duration::from_secs(2);
/// A call under a fault answers within this (its timeout is 100 ms; the fault holds 400 ms).
const ANSWERED: Duration = Duration::from_secs(2);
/// What an orphan may cost: the compensation (up to 2 s) or the TTL, after the fault.
const ORPHAN_BOUND: Duration = Duration::from_secs(4);

async fn can_take(locks: &impl Locker, name: &str) -> bool {
    match locks.try_acquire(name).await {
        Ok(Some(guard)) => {
            let _ = guard.release().await;
            true
        }
        _ => false,
    }
}

/// Takes `name` once the client has reconnected after the last fault (bounded).
async fn take(locks: &impl Locker, name: &str) -> palisade_lock::LockGuard {
    for _ in 0..150 {
        if let Ok(Some(guard)) = locks.try_acquire(name).await {
            return guard;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not take {name} after the fault healed");
}

async fn redis_locks<C: RedisClient>(
    faulty: C,
    observer: C,
    ttl: Duration,
) -> (RedisLock<C>, RedisLock<C>) {
    let faulty = RedisLock::new(faulty, ttl).with_timeout(Duration::from_millis(100));
    let observer = RedisLock::new(observer, ttl);
    // Load the scripts while the network is fine.
    faulty
        .try_acquire("warm")
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
    (faulty, observer)
}

async fn redis_acquire_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    // A long lease: an acquisition that landed unseen must be undone, not wait out the TTL.
    let (locks, observer) = redis_locks(faulty, observer, Duration::from_secs(30)).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let name = format!("acquire-{i}");
        let (outcome, took) = rig.inject(fault, locks.try_acquire(&name)).await;
        assert!(took < ANSWERED, "{fault:?}: acquire took {took:?}");
        if let Some(Ok(Some(guard))) = outcome {
            assert!(
                guard.is_lost() || !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
            let _ = guard.release().await;
        }
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: the lock is orphaned"
        );
    }
}

async fn redis_extend_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (locks, observer) = redis_locks(faulty, observer, TTL).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let name = format!("extend-{i}");
        let guard = take(&locks, &name).await;
        let (_, took) = rig.inject(fault, guard.extend()).await;
        assert!(took < ANSWERED, "{fault:?}: extend took {took:?}");
        // While the guard believes it holds the lock, nobody else does.
        if !guard.is_lost() {
            assert!(
                !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
        }
        let _ = guard.release().await;
        assert!(eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await);
    }
}

async fn redis_release_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (locks, observer) = redis_locks(faulty, observer, TTL).await;
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let name = format!("release-{i}");
        let guard = take(&locks, &name).await;
        let (_, took) = rig.inject(fault, guard.release()).await;
        assert!(took < ANSWERED, "{fault:?}: release took {took:?}");
        // A release that did not get through leaves the lock to its TTL, no longer.
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: the lock is orphaned"
        );
    }
}

async fn postgres_locks(rig: &FaultRig, pg: &TestPostgres) -> (PgAdvisoryLock, PgAdvisoryLock) {
    // With fencing: each acquisition under a fault also runs the fence statement.
    let faulty = PgAdvisoryLock::new(pg.pool_via(rig.addr(), 1).await, &pg.schema)
        .with_ping_interval(Duration::from_millis(200))
        .with_statement_timeout(Duration::from_millis(150))
        .with_fencing();
    faulty.migrate().await.unwrap();
    let observer = PgAdvisoryLock::new(pg.another_pool(2).await, &pg.schema);
    (faulty, observer)
}

/// No advisory lock of this test's namespace held by anyone.
async fn none_held(pg: &TestPostgres, locks: &PgAdvisoryLock, name: &str) -> bool {
    let key = locks.key(name);
    held_advisory_locks(&pg.pool)
        .await
        .map(|held| !held.iter().any(|l| l.key == key))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acquire_extend_and_release_under_every_network_fault() {
    let pg = TestPostgres::connect().await;
    let rig = FaultRig::in_front_of(pg.server_addr().await).await;
    let (locks, observer) = postgres_locks(&rig, &pg).await;
    for (i, fault) in Fault::network_matrix().into_iter().enumerate() {
        // Acquire, waiting in PostgreSQL's queue behind the observer.
        let name = format!("pg-acquire-{i}");
        let blocker = take(&observer, &name).await;
        let (outcome, took) = rig
            .inject(fault, locks.acquire(&name, Duration::from_millis(200)))
            .await;
        assert!(took < ANSWERED, "{fault:?}: acquire took {took:?}");
        assert!(
            matches!(outcome, None | Some(Err(_))),
            "{fault:?}: granted while held"
        );
        blocker.release().await.unwrap();
        // The waiter's connection never holds the lock afterwards (it was closed, not pooled).
        assert!(
            eventually(ORPHAN_BOUND, || none_held(&pg, &locks, &name)).await,
            "{fault:?}: a cancelled or failed waiter holds the lock"
        );
        assert!(eventually(ORPHAN_BOUND, || can_take(&locks, "after")).await);

        // An uncontended acquisition (the lock and then the fence statement) under the fault.
        let name = format!("pg-granted-{i}");
        let (outcome, took) = rig.inject(fault, locks.try_acquire(&name)).await;
        assert!(took < ANSWERED, "{fault:?}: acquire took {took:?}");
        if let Some(Ok(Some(guard))) = outcome {
            assert!(
                guard.is_lost() || !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
            let _ = guard.release().await;
        }
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: a half-finished acquisition left the lock held"
        );

        // Extend (the watchdog's ping): while the guard is not lost, nobody else holds it.
        let name = format!("pg-extend-{i}");
        let guard = take(&locks, &name).await;
        let (_, took) = rig.inject(fault, guard.extend()).await;
        assert!(took < ANSWERED, "{fault:?}: extend took {took:?}");
        if !guard.is_lost() {
            assert!(
                !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
        }
        let _ = guard.release().await;
        assert!(eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await);

        // Release.
        let name = format!("pg-release-{i}");
        let guard = take(&locks, &name).await;
        let (_, took) = rig.inject(fault, guard.release()).await;
        assert!(took < ANSWERED, "{fault:?}: release took {took:?}");
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: the lock outlived its release"
        );
    }
}

/// Three Redlock nodes, each behind its own fault proxy; `fault` hits the first two (a
/// majority) at once while `op` runs.
async fn on_majority<T>(
    rigs: &[FaultRig],
    fault: Fault,
    op: impl std::future::Future<Output = T>,
) -> (Option<T>, Duration) {
    let started = tokio::time::Instant::now();
    let (outcome, _) = rigs[0].inject(fault, rigs[1].inject(fault, op)).await;
    (outcome.and_then(|(inner, _)| inner), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_acquire_extend_and_release_with_a_majority_faulted() {
    let rigs = vec![
        FaultRig::start().await,
        FaultRig::start().await,
        FaultRig::start().await,
    ];
    let (mut faulty, mut direct) = (Vec::new(), Vec::new());
    for rig in &rigs {
        faulty.push(rig.faulty().await);
        direct.push(rig.observer().await);
    }
    // A long lease for acquisitions: a partial lock left on a majority must be undone.
    let locks = Redlock::new(faulty.clone(), Duration::from_secs(30))
        .unwrap()
        .with_node_timeout(Duration::from_millis(100));
    let observer = Redlock::new(direct.clone(), Duration::from_secs(30)).unwrap();
    let short = Redlock::new(faulty, TTL)
        .unwrap()
        .with_node_timeout(Duration::from_millis(100));
    take(&locks, "warm").await.release().await.unwrap();
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let name = format!("redlock-acquire-{i}");
        let (outcome, took) = on_majority(&rigs, fault, locks.try_acquire(&name)).await;
        assert!(took < ANSWERED * 2, "{fault:?}: acquire took {took:?}");
        if let Some(Ok(Some(guard))) = outcome {
            assert!(
                guard.is_lost() || !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
            let _ = guard.release().await;
        }
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: a partial lock is orphaned on a majority"
        );

        let name = format!("redlock-extend-{i}");
        let guard = take(&short, &name).await;
        let (_, took) = on_majority(&rigs, fault, guard.extend()).await;
        assert!(took < ANSWERED * 2, "{fault:?}: extend took {took:?}");
        if !guard.is_lost() {
            assert!(
                !can_take(&observer, &name).await,
                "{fault:?}: a second holder"
            );
        }
        let _ = guard.release().await;

        let name = format!("redlock-release-{i}");
        let guard = take(&short, &name).await;
        let (_, took) = on_majority(&rigs, fault, guard.release()).await;
        assert!(took < ANSWERED * 2, "{fault:?}: release took {took:?}");
        assert!(
            eventually(ORPHAN_BOUND, || can_take(&observer, &name)).await,
            "{fault:?}: the lock outlived its release"
        );
    }
}

palisade_testkit::on_both_clients!(
    redis_acquire_under_every_fault,
    redis_extend_under_every_fault,
    redis_release_under_every_fault,
);
