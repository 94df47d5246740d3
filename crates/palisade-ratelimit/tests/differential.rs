//! The Lua script and the Rust algorithms must give identical decisions: long random sequences
//! of (time step, cost, peek) run through both — the script with an explicit `now` — and every
//! answer is compared. Needs the Redis at REDIS_URL.

use std::time::Duration;

use palisade_core::key::Key;
use palisade_ratelimit::{
    FixedWindow, Gcra, MemoryStore, Policy, RedisStore, SlidingWindowLog, TokenBucket, store::Mode,
};
use palisade_testkit::TestRedis;
use proptest::{prelude::*, test_runner::TestCaseError};

fn policies() -> Vec<Policy> {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    vec![
        Policy::new("tb", TokenBucket::new(5, 2.5).unwrap()).unwrap(),
        Policy::new("tb-slow", TokenBucket::new(3, 0.7).unwrap()).unwrap(),
        Policy::new("tb-one", TokenBucket::new(1, 1000.0).unwrap()).unwrap(),
        Policy::new("gcra", Gcra::new(10, s(1)).unwrap().with_burst(4).unwrap()).unwrap(),
        Policy::new("gcra-odd", Gcra::new(7, ms(3_333)).unwrap()).unwrap(),
        Policy::new("fw", FixedWindow::new(7, s(2)).unwrap()).unwrap(),
        Policy::new("swl", SlidingWindowLog::new(6, ms(1_500)).unwrap()).unwrap(),
        Policy::builder("multi")
            .limit("burst", TokenBucket::new(4, 3.0).unwrap())
            .unwrap()
            .limit("window", SlidingWindowLog::new(9, s(3)).unwrap())
            .unwrap()
            .limit("fixed", FixedWindow::new(12, s(5)).unwrap())
            .unwrap()
            .limit("gcra", Gcra::new(8, s(2)).unwrap())
            .unwrap()
            .build()
            .unwrap(),
    ]
}

/// (microseconds since the previous step, cost, peek)
fn steps() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
    let dt = prop_oneof![
        3 => Just(0u64),
        5 => 0u64..5_000,
        5 => 0u64..400_000,
        2 => 0u64..4_000_000,
    ];
    let cost = prop_oneof![6 => 1u64..=2, 3 => 0u64..=6, 1 => 7u64..=20];
    prop::collection::vec((dt, cost, prop::bool::weighted(0.15)), 1..160)
}

#[test]
fn lua_and_rust_agree_on_random_sequences() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = rt.block_on(TestRedis::connect());
    let store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    let policies = policies();
    let case = std::cell::Cell::new(0u64);

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(&(0..policies.len(), steps()), |(p, steps)| {
            case.set(case.get() + 1);
            let case = case.get();
            let policy = &policies[p];
            let memory = MemoryStore::new();
            let key = Key::from(format!("case-{case}"));
            // A realistic epoch time, so magnitudes match production.
            let mut now: u64 = 1_764_000_000_000_000 + case * 10_000_000_000;
            for (i, (dt, cost, peek)) in steps.iter().copied().enumerate() {
                now += dt;
                let mode = if peek { Mode::Peek } else { Mode::Consume };
                let rust = memory.check_at(policy, &key, cost, mode, now);
                let lua = rt
                    .block_on(store.check_at(policy, &key, cost, mode, Some(now)))
                    .map_err(|e| TestCaseError::fail(format!("redis: {e}")))?;
                prop_assert_eq!(
                    (rust.is_allowed(), rust.limits()),
                    (lua.is_allowed(), lua.limits()),
                    "policy {} step {} (now {}, cost {}, {:?})",
                    policy.name(),
                    i,
                    now,
                    cost,
                    mode
                );
            }
            Ok(())
        })
        .unwrap();
}
