//! `scripts/semaphore.lua` is the twin of the pure model (`palisade_bulkhead::fleet::state`):
//! random sequences of acquire / renew / release by a few lease ids, with leases of different
//! lengths (instances configured differently) and time steps that let leases run out, run
//! through both with the same explicit clock, and every answer is compared. Needs the Redis at
//! REDIS_URL.

use std::time::Duration;

use palisade_bulkhead::{
    FleetSemaphore,
    fleet::state::{Leases, Op},
};
use palisade_testkit::TestRedis;
use proptest::{prelude::*, test_runner::TestCaseError};

const CAPACITY: u32 = 3;

/// (ms since the previous step, operation, lease id, lease ms)
fn steps() -> impl Strategy<Value = Vec<(u64, Op, usize, u64)>> {
    let dt = prop_oneof![3 => Just(0u64), 4 => 0u64..200, 2 => 0u64..3_000, 1 => 0u64..20_000];
    let op = prop_oneof![5 => Just(Op::Acquire), 2 => Just(Op::Renew), 2 => Just(Op::Release)];
    let lease = prop_oneof![Just(100u64), Just(1_000), Just(8_000)];
    prop::collection::vec((dt, op, 0usize..5, lease), 1..120)
}

#[test]
fn the_script_is_a_twin_of_the_model() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = rt.block_on(TestRedis::connect());
    let case = std::cell::Cell::new(0u64);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in steps())| {
        case.set(case.get() + 1);
        let name = format!("differential-{}", case.get());
        let semaphore = FleetSemaphore::new(redis.client.clone(), &name, CAPACITY)
            .with_prefix(&redis.prefix)
            .timeout(Duration::from_secs(2));
        let mut model = Leases::new();
        // An explicit clock far from the server's, so no server-side expiry interferes.
        let mut now = 1_000_000_000u64;
        for (i, &(dt, op, id, lease)) in steps.iter().enumerate() {
            now += dt;
            let id = format!("lease-{id}");
            let expected = model.step(now, op, &id, CAPACITY, lease);
            let got = rt
                .block_on(semaphore.step_at(op, &id, Duration::from_millis(lease), now))
                .unwrap();
            if got != expected {
                return Err(TestCaseError::fail(format!(
                    "step {i} ({op:?} {id}, lease {lease} ms, at +{dt} ms): the model says \
                     {expected:?}, the script {got:?}\nsteps: {steps:?}"
                )));
            }
        }
    });
}
