//! `scripts/semaphore.lua` is the twin of the pure model (`palisade_bulkhead::fleet::state`):
//! random sequences of acquire / renew / release by a few lease ids, with leases of different
//! lengths (instances configured differently) and time steps that let leases run out, run
//! through both with the same explicit clock — on the fred and the redis-rs client — and every
//! answer is compared. Needs the Redis at REDIS_URL.

use std::time::Duration;

use palisade_bulkhead::{
    FleetSemaphore,
    fleet::state::{Leases, Op},
};
use palisade_core::redis::RedisClient;
use proptest::prelude::*;

const CAPACITY: u32 = 3;

/// (ms since the previous step, operation, lease id, lease ms)
fn steps() -> impl Strategy<Value = Vec<(u64, Op, usize, u64)>> {
    let dt = prop_oneof![3 => Just(0u64), 4 => 0u64..200, 2 => 0u64..3_000, 1 => 0u64..20_000];
    let op = prop_oneof![5 => Just(Op::Acquire), 2 => Just(Op::Renew), 2 => Just(Op::Release)];
    let lease = prop_oneof![Just(100u64), Just(1_000), Just(8_000)];
    prop::collection::vec((dt, op, 0usize..5, lease), 1..120)
}

/// One sequence on `client`, under `prefix`.
async fn run<C: RedisClient>(
    client: &C,
    prefix: String,
    steps: Vec<(u64, Op, usize, u64)>,
) -> Result<(), String> {
    let semaphore = FleetSemaphore::new(client.clone(), "differential", CAPACITY)
        .with_prefix(&prefix)
        .timeout(Duration::from_secs(2));
    let mut model = Leases::new();
    // An explicit clock far from the server's, so no server-side expiry interferes.
    let mut now = 1_000_000_000u64;
    for (i, &(dt, op, id, lease)) in steps.iter().enumerate() {
        now += dt;
        let id = format!("lease-{id}");
        let expected = model.step(now, op, &id, CAPACITY, lease);
        let got = semaphore
            .step_at(op, &id, Duration::from_millis(lease), now)
            .await
            .map_err(|e| e.to_string())?;
        if got != expected {
            return Err(format!(
                "step {i} ({op:?} {id}, lease {lease} ms, at +{dt} ms): the model says \
                 {expected:?}, the script {got:?}"
            ));
        }
    }
    Ok(())
}

palisade_testkit::differential_on_both_clients!(
    the_script_is_a_twin_of_the_model,
    cases: 64,
    steps: steps,
    run: run,
);
