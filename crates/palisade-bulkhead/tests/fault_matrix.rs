//! The fault matrix for the fleet semaphore: acquire and release under every fault of
//! `palisade_testkit::faults`. Once the fault heals: never more than the capacity held, no
//! slot orphaned beyond the documented bound (the compensation, or the lease), no hang.

use std::time::Duration;

use palisade_bulkhead::FleetSemaphore;
use palisade_core::redis::RedisClient;
use palisade_testkit::faults::{Fault, FaultRig, eventually};

const CAPACITY: u32 = 2;
const ANSWERED: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(4);

async fn semaphores<C: RedisClient>(
    faulty: C,
    observer: C,
    lease: Duration,
) -> (FleetSemaphore<C>, FleetSemaphore<C>) {
    let faulty = FleetSemaphore::new(faulty, "partner", CAPACITY)
        .lease(lease)
        .timeout(Duration::from_millis(100));
    let observer = FleetSemaphore::new(observer, "partner", CAPACITY)
        .lease(lease)
        .timeout(Duration::from_secs(2));
    // Load the script while the network is fine.
    faulty.try_acquire().await.unwrap().release().await;
    (faulty, observer)
}

/// Whether the observer can take every slot (then gives them back).
async fn all_free<C: RedisClient>(observer: &FleetSemaphore<C>) -> bool {
    let mut held = Vec::new();
    for _ in 0..CAPACITY {
        match observer.try_acquire().await {
            Ok(permit) => held.push(permit),
            Err(_) => break,
        }
    }
    let free = held.len() == CAPACITY as usize;
    for permit in held {
        permit.release().await;
    }
    free
}

/// How many slots the observer can take now, at most `CAPACITY` (then gives them back).
async fn free_slots<C: RedisClient>(observer: &FleetSemaphore<C>) -> usize {
    let mut held = Vec::new();
    for _ in 0..=CAPACITY {
        if let Ok(permit) = observer.try_acquire().await {
            held.push(permit);
        }
    }
    let n = held.len();
    for permit in held {
        permit.release().await;
    }
    n
}

async fn acquire_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    // A long lease: an orphan must be undone, not wait out the lease.
    let (faulty, observer) = semaphores(faulty, observer, Duration::from_secs(30)).await;
    for fault in Fault::matrix() {
        let (outcome, took) = rig.inject(fault, faulty.try_acquire()).await;
        assert!(took < ANSWERED, "{fault:?}: acquire took {took:?}");
        if let Some(Ok(permit)) = outcome {
            // Held: the fleet has one slot fewer, never more than the capacity in all.
            assert!(
                free_slots(&observer).await < CAPACITY as usize,
                "{fault:?}: over capacity"
            );
            permit.release().await;
        }
        assert!(
            eventually(BOUND, || all_free(&observer)).await,
            "{fault:?}: a slot is orphaned"
        );
    }
}

async fn release_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (faulty, observer) = semaphores(faulty, observer, Duration::from_secs(2)).await;
    for fault in Fault::matrix() {
        let permit = loop {
            // Reconnected after the last fault.
            if let Ok(permit) = faulty.try_acquire().await {
                break permit;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (_, took) = rig.inject(fault, permit.release()).await;
        assert!(took < ANSWERED, "{fault:?}: release took {took:?}");
        // Released, or freed by its lease (2 s): no longer.
        assert!(
            eventually(BOUND, || all_free(&observer)).await,
            "{fault:?}: a slot outlived its release"
        );
    }
}

/// Renewal under every network fault (renewing is the permit's own background work, so there
/// is no caller to cancel): the lease is 300 ms and the fault holds 400 ms, so it runs out
/// while renewals cannot get through. Never over capacity: by the time another instance can
/// take the slot, the permit knows it is lost.
async fn renewal_under_every_fault<C: RedisClient>(rig: FaultRig, faulty: C, observer: C) {
    let (faulty, observer) = semaphores(faulty, observer, Duration::from_millis(300)).await;
    for fault in [
        Fault::DelayedReply,
        Fault::BlackHole,
        Fault::Reset,
        Fault::Paused,
    ] {
        let permit = loop {
            if let Ok(permit) = faulty.try_acquire().await {
                break permit;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        rig.inject(fault, tokio::time::sleep(FaultRig::HOLD)).await;
        // The first moment the fleet has every slot free again, the permit must be lost.
        assert!(
            eventually(BOUND, || async {
                let free = all_free(&observer).await;
                if free {
                    assert!(permit.is_lost(), "{fault:?}: a slot held twice");
                }
                free
            })
            .await,
            "{fault:?}: the slot never came back"
        );
        permit.release().await;
    }
}

palisade_testkit::on_both_clients!(
    acquire_under_every_fault,
    release_under_every_fault,
    renewal_under_every_fault,
);
