//! Fleet mode across three instances sharing a real Redis.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use palisade_breaker::{BreakerPolicy, CircuitBreaker, Fleet, OpenDuration, Outcome, State};
use palisade_testkit::TestRedis;

async fn fleet_of_three(open: Duration) -> (Vec<CircuitBreaker>, TestRedis) {
    let redis = TestRedis::connect().await;
    let mut breakers = Vec::new();
    for _ in 0..3 {
        let breaker = CircuitBreaker::new(
            BreakerPolicy::builder("shared-upstream")
                .count_window(4)
                .minimum_calls(4)
                .half_open_probes(1)
                .open_for(OpenDuration::fixed(open))
                .build()
                .unwrap(),
        );
        breaker.join_fleet(
            Fleet::new(redis.another_client().await)
                .with_prefix(&redis.prefix)
                .sync_every(Duration::from_millis(20)),
        );
        breakers.push(breaker);
    }
    (breakers, redis)
}

async fn until_state(breaker: &CircuitBreaker, state: State) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while breaker.state() != state {
        assert!(
            Instant::now() < deadline,
            "never reached {state:?}: {:?}",
            breaker.state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_instance_opens_the_others_learn_it() {
    let (fleet, _redis) = fleet_of_three(Duration::from_secs(30)).await;
    for _ in 0..4 {
        fleet[0].try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(fleet[0].state(), State::Open);
    until_state(&fleet[1], State::Open).await;
    until_state(&fleet[2], State::Open).await;
    // They refuse without having seen a single failure themselves.
    let refused = fleet[2].try_acquire().unwrap_err();
    assert!(refused.retry_after.unwrap() > Duration::from_secs(25));
}

/// After the open period, one instance probes at a time: probes across the fleet are spaced by
/// the open period that each failed probe restarts, never one per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_instance_probes_at_a_time() {
    let open = Duration::from_millis(300);
    let (fleet, _redis) = fleet_of_three(open).await;
    for _ in 0..4 {
        fleet[0].try_acquire().unwrap().record(Outcome::Failure);
    }
    for b in &fleet {
        until_state(b, State::Open).await;
    }
    let probes = Arc::new(Mutex::new(Vec::<(usize, Instant)>::new()));
    let stop = Instant::now() + Duration::from_millis(2_000);
    let tasks: Vec<_> = fleet
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, breaker)| {
            let probes = probes.clone();
            tokio::spawn(async move {
                while Instant::now() < stop {
                    if let Ok(permit) = breaker.try_acquire() {
                        probes.lock().unwrap().push((i, Instant::now()));
                        // The upstream is still sick.
                        permit.record(Outcome::Failure);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut probes = probes.lock().unwrap().clone();
    probes.sort_by_key(|(_, at)| *at);
    assert!(probes.len() >= 2, "the fleet kept probing: {probes:?}");
    for pair in probes.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= open / 2,
            "two probes {gap:?} apart (instances {} and {}): {probes:?}",
            pair[0].0,
            pair[1].0
        );
    }
}
