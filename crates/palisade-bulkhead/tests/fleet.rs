//! The fleet semaphore across three instances sharing a real Redis.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use palisade_bulkhead::{FleetError, FleetPermit, FleetSemaphore};
use palisade_core::redis::RedisClient;
use palisade_testkit::{
    FaultMode, FaultProxy, RedisCluster, RedisNode, TestRedis, connect_url, unique_prefix,
};

fn instance<C: RedisClient>(
    client: C,
    prefix: &str,
    capacity: u32,
    lease: Duration,
) -> FleetSemaphore<C> {
    FleetSemaphore::new(client, "partner", capacity)
        .with_prefix(prefix)
        .lease(lease)
        .timeout(Duration::from_secs(2))
}

async fn three(
    redis: &TestRedis,
    capacity: u32,
    lease: Duration,
) -> Vec<FleetSemaphore<fred::clients::Client>> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(
            redis.another_client().await,
            &redis.prefix,
            capacity,
            lease,
        ));
    }
    instances
}

/// Runs each scenario (given a way to build three instances of one capacity and lease) on
/// every client: fred and redis-rs on the shared Redis; both on a 3-master cluster.
macro_rules! on_every_client {
    ($($scenario:ident),* $(,)?) => {
        mod fred_client {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let redis = TestRedis::connect().await;
                    super::$scenario(async |capacity, lease| three(&redis, capacity, lease).await)
                        .await;
                }
            )*
        }

        mod redis_rs_client {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let redis = TestRedis::connect().await;
                    super::$scenario(async |capacity, lease| {
                        let mut instances = Vec::new();
                        for _ in 0..3 {
                            let client = redis.redis_rs().await;
                            instances.push(instance(client, &redis.prefix, capacity, lease));
                        }
                        instances
                    })
                    .await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_scenario_on_redis_cluster() {
            let cluster = RedisCluster::start();
            let (fred, redis_rs) = (cluster.client().await, cluster.redis_rs().await);
            $(
                let prefix = unique_prefix("cluster");
                $scenario(async |capacity, lease| {
                    (0..3)
                        .map(|_| instance(fred.clone(), &prefix, capacity, lease))
                        .collect()
                })
                .await;
                let prefix = unique_prefix("cluster");
                $scenario(async |capacity, lease| {
                    (0..3)
                        .map(|_| instance(redis_rs.clone(), &prefix, capacity, lease))
                        .collect()
                })
                .await;
            )*
        }
    };
}

on_every_client!(
    never_more_than_n_across_three_instances,
    a_dead_instance_gives_its_permits_back_when_the_leases_expire,
    renewal_keeps_a_long_call_in_its_slot,
);

async fn never_more_than_n_across_three_instances<C: RedisClient>(
    three: impl AsyncFn(u32, Duration) -> Vec<FleetSemaphore<C>>,
) {
    let instances = three(4, Duration::from_secs(10)).await;
    let (in_flight, peak, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let stop = Instant::now() + Duration::from_millis(800);
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let semaphore = instances[i % 3].clone();
            let (in_flight, peak, done) = (in_flight.clone(), peak.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    match semaphore.try_acquire().await {
                        Ok(permit) => {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            permit.release().await;
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(FleetError::Full { retry_after }) => {
                            assert!(retry_after <= Duration::from_secs(10));
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        done.load(Ordering::SeqCst) >= 10,
        "the semaphore let work through"
    );
}

async fn a_dead_instance_gives_its_permits_back_when_the_leases_expire<C: RedisClient>(
    three: impl AsyncFn(u32, Duration) -> Vec<FleetSemaphore<C>>,
) {
    let instances = three(2, Duration::from_millis(400)).await;
    // Instance 0 takes every permit, then dies without releasing them.
    for _ in 0..2 {
        instances[0].try_acquire().await.unwrap().abandon();
    }
    match instances[1].try_acquire().await {
        Err(FleetError::Full { retry_after }) => assert!(retry_after <= Duration::from_millis(400)),
        other => panic!("expected Full, got {other:?}"),
    }
    // The leases end by Redis' clock: wait on that (bounded), not on a fixed sleep. The two
    // leases were taken one round trip apart, so they end one round trip apart too.
    let a = acquire_within(&instances[1], Duration::from_secs(2)).await;
    let b = acquire_within(&instances[2], Duration::from_secs(2)).await;
    assert!(instances[2].try_acquire().await.is_err());
    a.release().await;
    b.release().await;
}

/// Polls `semaphore` until it grants a permit, for at most `bound` of real time.
async fn acquire_within<C: RedisClient>(
    semaphore: &FleetSemaphore<C>,
    bound: Duration,
) -> FleetPermit<C> {
    let until = Instant::now() + bound;
    loop {
        match semaphore.try_acquire().await {
            Ok(permit) => return permit,
            Err(FleetError::Full { .. }) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(other) => panic!("no permit within {bound:?}: {other}"),
        }
    }
}

async fn renewal_keeps_a_long_call_in_its_slot<C: RedisClient>(
    three: impl AsyncFn(u32, Duration) -> Vec<FleetSemaphore<C>>,
) {
    let instances = three(1, Duration::from_millis(600)).await;
    let long = instances[0].try_acquire().await.unwrap();
    // 1.5 leases long: renewed every 200 ms, the slot stays taken.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(instances[1].try_acquire().await.is_err());
    }
    assert!(!long.is_lost());
    long.release().await;
    instances[1].try_acquire().await.unwrap().release().await;
}

/// Regression: an acquisition whose reply came after the timeout had taken a slot nobody
/// renewed or released: a 50 ms latency blip filled the semaphore with orphans for a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_acquisitions_give_their_slots_back() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let slow = FleetSemaphore::new(
        connect_url(&proxy.redis_url(), Duration::from_secs(3))
            .await
            .unwrap(),
        "partner",
        3,
    )
    .lease(Duration::from_secs(30))
    .timeout(Duration::from_millis(50));
    let direct = FleetSemaphore::new(node.client().await, "partner", 3)
        .lease(Duration::from_secs(30))
        .timeout(Duration::from_secs(2));
    // Load the script while the network is fine (a late NOSCRIPT would never land).
    slow.try_acquire().await.unwrap().release().await;
    proxy.set(FaultMode::Latency(Duration::from_millis(200)));
    for _ in 0..3 {
        let late = slow.try_acquire().await;
        assert!(matches!(late, Err(FleetError::Backend(_))), "{late:?}");
    }
    // The late scripts land (200 ms each way), then their compensations.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set(FaultMode::Pass);
    let mut permits = Vec::new();
    for i in 0..3 {
        match direct.try_acquire().await {
            Ok(permit) => permits.push(permit),
            Err(error) => panic!("slot {i} still held by an orphan: {error}"),
        }
    }
    for permit in permits {
        permit.release().await;
    }
}

/// Regression: every script call set the key's expiry from the *caller's* lease, so an
/// instance configured with a short lease made the whole set expire while another instance's
/// long lease was live — and the next acquisition found every slot free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lease_elsewhere_never_expires_a_long_one() {
    let redis = TestRedis::connect().await;
    let long = instance(
        redis.another_client().await,
        &redis.prefix,
        1,
        Duration::from_secs(10),
    );
    let short = instance(
        redis.another_client().await,
        &redis.prefix,
        1,
        Duration::from_millis(100),
    );
    let held = long.try_acquire().await.unwrap();
    // The short-lease instance touches the set (a refused acquisition): the set must still
    // live as long as the long lease (read from Redis, no waiting on its clock).
    assert!(matches!(
        short.try_acquire().await,
        Err(FleetError::Full { .. })
    ));
    let key = palisade_core::redis_key::RedisKeyBuilder::new("semaphore")
        .with_prefix(&redis.prefix)
        .key("leases", &palisade_core::key::Key::from("partner"));
    let ttl_ms: i64 = fred::interfaces::KeysInterface::pttl(&redis.client, key.as_str())
        .await
        .unwrap();
    assert!(
        ttl_ms > 9_000,
        "the set expires in {ttl_ms} ms, under a lease live for ~10 s: a second holder after"
    );
    held.release().await;
}
