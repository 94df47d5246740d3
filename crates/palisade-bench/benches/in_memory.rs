//! In-memory keyed decision, ns/op: palisade's `MemoryStore` against governor's keyed limiter
//! (dashmap), in the same run, on the same 10 000 IP keys, every decision allowed.
//!
//! cargo bench -p palisade-bench --bench in_memory

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use palisade_core::key::Key;
use palisade_ratelimit::{
    FixedWindow, Gcra, MemoryStore, Policy, RateLimitStore, TokenBucket,
    store::{Checked, Mode},
};

const KEYS: u32 = 10_000;

fn ips() -> Vec<IpAddr> {
    (0..KEYS)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect()
}

fn palisade(c: &mut Criterion, name: &str, policy: Policy) {
    let store = MemoryStore::new();
    let keys: Vec<Key> = ips().into_iter().map(Key::Ip).collect();
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            match store.check(&policy, &keys[i], 1, Mode::Consume) {
                Checked::Ready(Ok(d)) => black_box(d.is_allowed()),
                _ => unreachable!(),
            }
        })
    });
}

fn keyed(c: &mut Criterion) {
    // governor keyed (dashmap), GCRA: the peer.
    let limiter = RateLimiter::dashmap(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
    let keys = ips();
    let mut i = 0usize;
    c.bench_function("governor keyed check_key (GCRA)", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(limiter.check_key(&keys[i]).is_ok())
        })
    });

    let second = Duration::from_secs(1);
    c.bench_function("clock: std Instant::now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    c.bench_function("clock: tokio Instant::now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    {
        // The decision alone, without reading the clock.
        let store = MemoryStore::new();
        let policy = Policy::new("gcra", Gcra::new(1_000_000, second).unwrap()).unwrap();
        let keys: Vec<Key> = ips().into_iter().map(Key::Ip).collect();
        let mut i = 0usize;
        let mut now = 1_000_000u64;
        c.bench_function("palisade memory GCRA (given now, no clock read)", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                now += 1;
                black_box(
                    store
                        .check_at(&policy, &keys[i], 1, Mode::Consume, now)
                        .is_allowed(),
                )
            })
        });
    }
    palisade(
        c,
        "palisade memory GCRA",
        Policy::new("gcra", Gcra::new(1_000_000, second).unwrap()).unwrap(),
    );
    palisade(
        c,
        "palisade memory token bucket",
        Policy::new("tb", TokenBucket::new(1_000_000, 1_000_000.0).unwrap()).unwrap(),
    );
    palisade(
        c,
        "palisade memory token bucket + daily window (2 limits)",
        Policy::builder("two")
            .limit("tb", TokenBucket::new(1_000_000, 1_000_000.0).unwrap())
            .unwrap()
            .limit("daily", FixedWindow::new(1 << 40, second * 86_400).unwrap())
            .unwrap()
            .build()
            .unwrap(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = keyed
}
criterion_main!(benches);
