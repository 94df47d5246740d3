//! Fleet mode across three instances sharing a real Redis.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fred::interfaces::KeysInterface;
use palisade_breaker::{BreakerPolicy, CircuitBreaker, Fleet, OpenDuration, Outcome, State};
use palisade_testkit::TestRedis;

async fn fleet_of_three(open: Duration) -> (Vec<CircuitBreaker>, TestRedis) {
    fleet_with_lease(open, Duration::from_secs(5)).await
}

async fn fleet_with_lease(open: Duration, lease: Duration) -> (Vec<CircuitBreaker>, TestRedis) {
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
        // Instances on different clients share one fleet: the middle one runs on redis-rs, so
        // every fleet test runs both clients against the same state.
        if breakers.len() == 1 {
            breaker.join_fleet(
                Fleet::new(redis.redis_rs().await)
                    .with_prefix(&redis.prefix)
                    .sync_every(Duration::from_millis(20))
                    .probe_lease(lease),
            );
        } else {
            breaker.join_fleet(
                Fleet::new(redis.another_client().await)
                    .with_prefix(&redis.prefix)
                    .sync_every(Duration::from_millis(20))
                    .probe_lease(lease),
            );
        }
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
    opens_everywhere_from_one(&fleet).await;
}

/// The same on a 3-master Redis Cluster, one instance per client and a third on fred again:
/// the breaker's keys share a slot (its name is the hash tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_redis_cluster_learns_an_opening() {
    let cluster = palisade_testkit::RedisCluster::start();
    let prefix = palisade_testkit::unique_prefix("cluster");
    let mut fleet = Vec::new();
    for i in 0..3 {
        let breaker = CircuitBreaker::new(
            BreakerPolicy::builder("shared-upstream")
                .count_window(4)
                .minimum_calls(4)
                .open_for(OpenDuration::fixed(Duration::from_secs(30)))
                .build()
                .unwrap(),
        );
        let every = Duration::from_millis(20);
        let timeout = Duration::from_secs(2);
        if i == 1 {
            let fleet = Fleet::new(cluster.redis_rs().await).with_timeout(timeout);
            breaker.join_fleet(fleet.with_prefix(&prefix).sync_every(every));
        } else {
            let fleet = Fleet::new(cluster.client().await).with_timeout(timeout);
            breaker.join_fleet(fleet.with_prefix(&prefix).sync_every(every));
        }
        fleet.push(breaker);
    }
    opens_everywhere_from_one(&fleet).await;
}

async fn opens_everywhere_from_one(fleet: &[CircuitBreaker]) {
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

async fn open_everywhere(fleet: &[CircuitBreaker]) {
    for _ in 0..4 {
        fleet[0].try_acquire().unwrap().record(Outcome::Failure);
    }
    for b in fleet {
        until_state(b, State::Open).await;
    }
}

/// Drives healthy calls into `breaker` until it closes (bounded): the number of probes made.
async fn heal(breaker: &CircuitBreaker, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut probes = 0;
    while breaker.state() != State::Closed {
        assert!(
            Instant::now() < deadline,
            "never closed: {:?}",
            breaker.state()
        );
        if let Ok(permit) = breaker.try_acquire() {
            probes += 1;
            permit.record(Outcome::Success);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    probes
}

/// Regression: after the probe round succeeded the other instances were not told; each had to
/// win the lease and probe again (an instance without calls stayed open for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_round_closes_the_whole_fleet() {
    let (fleet, _redis) = fleet_of_three(Duration::from_millis(300)).await;
    open_everywhere(&fleet).await;
    let probes = heal(&fleet[0], Duration::from_secs(5)).await;
    assert_eq!(probes, 1, "one probe (half_open_probes = 1)");
    // The others close without a call of their own.
    until_state(&fleet[1], State::Closed).await;
    until_state(&fleet[2], State::Closed).await;
}

/// Regression: an idle instance could win the probe lease and, making no call, hold every
/// other instance open for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_never_holds_the_fleet_up() {
    let open = Duration::from_millis(200);
    let (fleet, _redis) = fleet_with_lease(open, Duration::from_secs(20)).await;
    for round in 0..3 {
        open_everywhere(&fleet).await;
        // Only the last instance has calls; the lease is 20 s.
        let started = Instant::now();
        heal(&fleet[2], Duration::from_secs(4)).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "round {round}: closed after {:?}",
            started.elapsed()
        );
        for b in &fleet {
            until_state(b, State::Closed).await;
        }
    }
}

/// Regression: the fleet `close` deleted the opening unconditionally, so a prober's late close
/// wiped an opening another instance had just published. Driven on the script itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_close_never_wipes_a_fresh_opening() {
    use fred::interfaces::LuaInterface;
    let redis = TestRedis::connect().await;
    let keys = vec![
        format!("{}:open:{{b}}", redis.prefix),
        format!("{}:probe:{{b}}", redis.prefix),
    ];
    let run = |op: &str, me: &str, ms: u64| {
        let (client, keys) = (redis.client.clone(), keys.clone());
        let args = vec![op.to_owned(), me.to_owned(), ms.to_string()];
        async move {
            client
                .eval::<Vec<i64>, _, _, _>(include_str!("../src/scripts/fleet.lua"), keys, args)
                .await
                .unwrap()
        }
    };
    // A holds the probe lease and probes…
    assert_eq!(run("lease", "a", 5000).await[2], 1);
    // …meanwhile C's own calls fail and it opens the fleet…
    run("open", "c", 30_000).await;
    // …then A's probe succeeds and it closes: the fresh opening must stand.
    run("close", "a", 10_000).await;
    let read = run("read", "b", 0).await;
    assert!(read[1] > read[0], "the fleet is still open: {read:?}");
    assert_eq!(read[3], 0, "no recovery published");
    // A close by the lease holder does publish the recovery.
    redis.client.del::<i64, _>(keys.clone()).await.unwrap();
    assert_eq!(run("lease", "a", 5000).await[2], 1);
    let closed = run("close", "a", 10_000).await;
    assert_eq!((closed[1], closed[3]), (0, 1), "{closed:?}");
}

/// The fault matrix for the fleet breaker: the fleet's publish and probe under every fault.
/// Fleet state is best effort by design (a lost publish leaves each instance its own local
/// breaker), so the invariants are liveness ones: the call path never waits on Redis, and once
/// the fault heals the fleet closes after one healthy probe round and shares the next opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_probe_under_every_fault() {
    use palisade_testkit::faults::{Fault, FaultRig, eventually};

    let rig = FaultRig::start().await;
    let breaker = |name: &str| {
        CircuitBreaker::new(
            BreakerPolicy::builder(name)
                .count_window(4)
                .minimum_calls(4)
                .half_open_probes(1)
                .open_for(OpenDuration::fixed(Duration::from_millis(200)))
                .build()
                .unwrap(),
        )
    };
    for (i, fault) in Fault::matrix().into_iter().enumerate() {
        let name = format!("matrix-{i}");
        let (faulty, healthy) = (breaker(&name), breaker(&name));
        faulty.join_fleet(
            Fleet::new(rig.faulty().await)
                .sync_every(Duration::from_millis(20))
                .probe_lease(Duration::from_secs(1)),
        );
        healthy.join_fleet(
            Fleet::new(rig.observer().await)
                .sync_every(Duration::from_millis(20))
                .probe_lease(Duration::from_secs(1)),
        );
        // The opening is published (and the probe lease sought) while the fault is on; the
        // call path never waits for Redis.
        let (call, took) = rig
            .inject(fault, async {
                for _ in 0..4 {
                    faulty.try_acquire().unwrap().record(Outcome::Failure);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let started = Instant::now();
                let _ = faulty.try_acquire();
                started.elapsed()
            })
            .await;
        assert!(took < Duration::from_secs(3), "{fault:?}: took {took:?}");
        if let Some(call) = call {
            // Refused locally: far below any Redis timeout (100 ms would mean it waited).
            assert!(
                call < Duration::from_millis(50),
                "{fault:?}: the call waited {call:?}"
            );
        }
        // After the fault: one healthy probe round closes the whole fleet…
        heal(&faulty, Duration::from_secs(5)).await;
        assert!(
            eventually(Duration::from_secs(3), || async {
                healthy.state() == State::Closed
            })
            .await,
            "{fault:?}: the fleet does not close"
        );
        // …and the next opening reaches the other instance.
        for _ in 0..4 {
            faulty.try_acquire().unwrap().record(Outcome::Failure);
        }
        assert!(
            eventually(Duration::from_secs(3), || async {
                healthy.state() == State::Open
            })
            .await,
            "{fault:?}: the fleet sync did not recover"
        );
    }
}
