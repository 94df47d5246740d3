//! Lock acquire + release, palisade against rslock in the same run: one Redis (the shared
//! server at `REDIS_URL`), and Redlock over 3 and 5 private `redis-server` nodes. Latency is
//! one task acquiring and releasing a fresh name; "16 concurrent" runs 16 tasks on distinct
//! names at once and reports the time per acquire+release (throughput = 1 / that).
//!
//! cargo bench -p palisade-bench --bench lock

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_lock::{Locker, RedisLock, Redlock};
use palisade_testkit::{RedisNode, TestRedis};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn name() -> String {
    format!(
        "bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const TTL: Duration = Duration::from_secs(10);

async fn palisade_once<L: Locker>(locks: &L) {
    let guard = locks.try_acquire(&name()).await.unwrap().unwrap();
    black_box(guard.release().await.unwrap());
}

async fn rslock_once(manager: &rslock::LockManager) {
    let lock = manager.lock(name().as_bytes(), TTL).await.unwrap();
    manager.unlock(&lock).await;
}

/// One acquire+release after another, then 16 at once on distinct names (time per operation).
fn bench_one<F, Fut>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, once: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    c.bench_function(&format!("{name} acquire+release"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    once().await;
                }
                started.elapsed()
            })
        })
    });
    c.bench_function(&format!("{name} 16 concurrent"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..16).map(|_| tokio::spawn(once.clone()())).collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                started.elapsed() / 16
            })
        })
    });
}

fn bench_pair<L: Locker>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    label: &str,
    palisade: L,
    rslock: rslock::LockManager,
) {
    let rslock = std::sync::Arc::new(rslock);
    bench_one(c, rt, &format!("lock {label}: palisade"), move || {
        let locks = palisade.clone();
        async move { palisade_once(&locks).await }
    });
    bench_one(c, rt, &format!("lock {label}: rslock"), move || {
        let manager = rslock.clone();
        async move { rslock_once(&manager).await }
    });
}

/// One bare `SET` per call: what each Redis client costs on its own.
fn raw_clients(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    fred_client: &fred::clients::Client,
    url: &str,
) {
    use fred::interfaces::KeysInterface;
    let redis_rs = rt.block_on(async {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    });
    c.bench_function("client: fred SET", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let _: () = fred_client
                        .set("bench:raw", "v", None, None, false)
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        })
    });
    c.bench_function("client: redis-rs SET", |b| {
        b.iter_custom(|iters| {
            let mut con = redis_rs.clone();
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let _: () = redis::cmd("SET")
                        .arg("bench:raw")
                        .arg("v")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        })
    });
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let redis = rt.block_on(TestRedis::connect());
    let url = palisade_testkit::redis_url();
    raw_clients(c, &rt, &redis.client, &url);
    let single = RedisLock::new(redis.client.clone(), TTL).with_prefix(&redis.prefix);
    bench_pair(
        c,
        &rt,
        "1 node",
        single.clone(),
        rslock::LockManager::new(vec![url.clone()]),
    );
    let pool = rt.block_on(async {
        use fred::interfaces::ClientLike;
        let config = fred::types::config::Config::from_url(&url).unwrap();
        let pool = fred::types::Builder::from_config(config)
            .build_pool(2)
            .unwrap();
        pool.init().await.unwrap();
        pool
    });
    bench_pair(
        c,
        &rt,
        "1 node, fred pool of 2",
        RedisLock::new(pool, TTL).with_prefix(&redis.prefix),
        rslock::LockManager::new(vec![url.clone()]),
    );
    bench_pair(
        c,
        &rt,
        "1 node, no watchdog",
        single.without_watchdog(),
        rslock::LockManager::new(vec![url]),
    );
    for n in [3, 5] {
        let nodes: Vec<RedisNode> = (0..n).map(|_| RedisNode::start()).collect();
        let clients = rt.block_on(async {
            let mut clients = Vec::new();
            for node in &nodes {
                clients.push(node.client().await);
            }
            clients
        });
        let redlock = Redlock::new(clients, TTL).unwrap();
        let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
        bench_pair(
            c,
            &rt,
            &format!("redlock {n} nodes"),
            redlock,
            rslock::LockManager::new(urls),
        );
    }
}

criterion_group! {
    name = lock;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(lock);
