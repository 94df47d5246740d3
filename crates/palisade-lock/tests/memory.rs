//! The in-memory lock under paused time: exclusion, fencing, leases, the watchdog, waiting,
//! several locks at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use palisade_lock::{LockError, Locker, MemoryLock};

#[tokio::test(start_paused = true)]
async fn one_holder_and_increasing_tokens() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let a = locks.try_acquire("x").await.unwrap().unwrap();
    assert!(locks.try_acquire("x").await.unwrap().is_none());
    assert!(
        locks.try_acquire("y").await.unwrap().is_some(),
        "other names are free"
    );
    assert_eq!(a.fencing_token(), Some(1));
    assert!(a.release().await.unwrap());
    let b = locks.try_acquire("x").await.unwrap().unwrap();
    assert_eq!(b.fencing_token(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn lease_runs_out_without_the_watchdog_and_not_with_it() {
    let bare = MemoryLock::new(Duration::from_secs(3)).without_watchdog();
    let held = bare.try_acquire("x").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let next = bare.try_acquire("x").await.unwrap().expect("lease ran out");
    assert!(
        !held.release().await.unwrap(),
        "a stale release frees nothing"
    );
    assert!(
        bare.try_acquire("x").await.unwrap().is_none(),
        "the new holder keeps it"
    );
    drop(next);

    let watched = MemoryLock::new(Duration::from_secs(3));
    let held = watched.try_acquire("x").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!held.is_lost());
    assert!(
        watched.try_acquire("x").await.unwrap().is_none(),
        "kept alive 10 TTLs"
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_and_busy() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let held = locks.try_acquire("x").await.unwrap().unwrap();
    let err = locks
        .acquire("x", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err}");
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire("x", Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.release().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().fencing_token(), Some(2));
    assert!(matches!(
        locks.try_acquire("").await,
        Err(LockError::InvalidName(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn dropped_guard_releases() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    drop(locks.try_acquire("x").await.unwrap().unwrap());
    tokio::task::yield_now().await;
    assert!(locks.try_acquire("x").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn run_excludes_and_releases() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let inside = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (locks, inside, last) = (locks.clone(), inside.clone(), last.clone());
        tasks.push(tokio::spawn(async move {
            locks
                .run("x", Duration::from_secs(60), |lock| {
                    let token = lock.fencing_token.unwrap();
                    async move {
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                        assert!(token > last.swap(token, Ordering::SeqCst));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        inside.store(false, Ordering::SeqCst);
                    }
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(last.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn lock_all_never_deadlocks() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let locks = locks.clone();
        // Opposite orders: sorting makes them agree.
        let names: Vec<&str> = if i % 2 == 0 {
            vec!["a", "b", "c"]
        } else {
            vec!["c", "b", "a"]
        };
        tasks.push(tokio::spawn(async move {
            let guards = locks
                .acquire_all(&names, Duration::from_secs(60))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            for guard in guards {
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A failed acquire_all leaves nothing held.
    let c = locks.try_acquire("c").await.unwrap().unwrap();
    assert!(
        locks
            .acquire_all(&["a", "b", "c"], Duration::from_millis(50))
            .await
            .is_err()
    );
    assert!(locks.try_acquire("a").await.unwrap().is_some());
    drop(c);
}
