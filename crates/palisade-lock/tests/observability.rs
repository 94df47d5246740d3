//! `palisade_lock_held` follows the guards, losses and layer outcomes are counted. One test in
//! this binary: it installs the process-wide recorder.

use std::time::Duration;

use palisade_lock::{Locker, MemoryLock};
use palisade_testkit::metrics::Recording;

#[tokio::test(start_paused = true)]
async fn held_gauge_and_losses() {
    let recording = Recording::default();
    metrics::set_global_recorder(recording.clone()).expect("the only recorder in this binary");
    let locks = MemoryLock::new(Duration::from_secs(10));
    let a = locks.try_acquire("a").await.unwrap().unwrap();
    let b = locks.try_acquire("b").await.unwrap().unwrap();
    assert_eq!(recording.get("palisade_lock_held{}"), 2.0);
    a.release().await.unwrap();
    drop(b);
    assert_eq!(recording.get("palisade_lock_held{}"), 0.0);
    // A lease that ran out (no watchdog) and was taken over: the next extension finds it lost,
    // once.
    let bare = MemoryLock::new(Duration::from_secs(3)).without_watchdog();
    let stale = bare.try_acquire("c").await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(4)).await;
    let _fresh = bare.try_acquire("c").await.unwrap().unwrap();
    assert!(!stale.extend().await.unwrap());
    assert!(!stale.extend().await.unwrap());
    assert!(stale.is_lost());
    assert_eq!(recording.get("palisade_lock_lost_total{}"), 1.0);
}
