//! The in-memory store under paused time: eviction keeps memory bounded, and refill follows
//! tokio's clock.

use std::time::Duration;

use palisade_core::key::Key;
use palisade_ratelimit::{Gcra, MemoryStore, Policy, RateLimiter, TokenBucket};

#[tokio::test(start_paused = true)]
async fn never_repeated_keys_do_not_grow_memory_without_bound() {
    let store = MemoryStore::new();
    let limiter = RateLimiter::new(
        store.clone(),
        Policy::new("p", Gcra::new(10, Duration::from_secs(1)).unwrap()).unwrap(),
    );
    let mut peak = 0;
    // 1 000 000 distinct keys, 1 000 per simulated 10 ms: 100 000 new keys per second.
    for batch in 0..1_000u64 {
        for i in 0..1_000u64 {
            let key = Key::from(format!("k-{batch}-{i}"));
            assert!(limiter.check(&key, 1).await.unwrap().is_allowed());
        }
        tokio::time::advance(Duration::from_millis(10)).await;
        peak = peak.max(store.len());
    }
    // Each key's state expires after 100 ms (one unit of a 10/s GCRA) and is dropped within
    // the one-second grace plus one sweep period: at most ~2.1 s of keys, 210 000, are held,
    // however long the stream runs.
    assert!(peak <= 250_000, "peak {peak} entries of 1 000 000 seen");
    tokio::time::advance(Duration::from_secs(5)).await;
    // Any touch sweeps its shard; touching many keys sweeps them all.
    for i in 0..5_000u64 {
        let _ = limiter.check(&Key::from(format!("late-{i}")), 1).await;
    }
    assert!(
        store.len() <= 5_000,
        "{} entries after everything expired",
        store.len()
    );
}

#[tokio::test(start_paused = true)]
async fn refill_follows_tokio_time() {
    let limiter = RateLimiter::new(
        MemoryStore::new(),
        Policy::new("p", TokenBucket::new(10, 5.0).unwrap()).unwrap(),
    );
    let key = Key::from("k");
    assert!(limiter.check(&key, 10).await.unwrap().is_allowed());
    let refused = limiter.check(&key, 1).await.unwrap();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(200)));
    tokio::time::advance(Duration::from_millis(199)).await;
    assert!(!limiter.check(&key, 1).await.unwrap().is_allowed());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(limiter.check(&key, 1).await.unwrap().is_allowed());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(limiter.peek(&key, 0).await.unwrap().remaining(), 10);
}
