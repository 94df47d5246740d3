//! The fleet semaphore across three instances sharing a real Redis.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use palisade_bulkhead::{FleetError, FleetSemaphore};
use palisade_testkit::TestRedis;

async fn three(
    redis: &TestRedis,
    capacity: u32,
    lease: Duration,
) -> Vec<FleetSemaphore<fred::clients::Client>> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(
            FleetSemaphore::new(redis.another_client().await, "partner", capacity)
                .with_prefix(&redis.prefix)
                .lease(lease)
                .timeout(Duration::from_secs(2)),
        );
    }
    instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_n_across_three_instances() {
    let redis = TestRedis::connect().await;
    let instances = three(&redis, 4, Duration::from_secs(10)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_gives_its_permits_back_when_the_leases_expire() {
    let redis = TestRedis::connect().await;
    let instances = three(&redis, 2, Duration::from_millis(400)).await;
    // Instance 0 takes every permit, then dies without releasing them.
    for _ in 0..2 {
        instances[0].try_acquire().await.unwrap().abandon();
    }
    match instances[1].try_acquire().await {
        Err(FleetError::Full { retry_after }) => assert!(retry_after <= Duration::from_millis(400)),
        other => panic!("expected Full, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let a = instances[1].try_acquire().await.unwrap();
    let b = instances[2].try_acquire().await.unwrap();
    assert!(instances[2].try_acquire().await.is_err());
    a.release().await;
    b.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_a_long_call_in_its_slot() {
    let redis = TestRedis::connect().await;
    let instances = three(&redis, 1, Duration::from_millis(600)).await;
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
