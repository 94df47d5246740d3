//! [`ClaimGuard`]: settles the claim however the request ends.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use palisade_core::{
    backoff::{self, Jitter},
    deadline::Deadline,
    random,
};
use tokio::time::Instant;

use crate::{
    NotApplied, UnknownOutcome,
    metrics::count,
    store::{IdempotencyStore, Owner, RecordKey},
};

/// Settles the claim however the request ends: completed with the response, released, or —
/// when the outcome is unknown (an error, a 5xx, a panic, the future dropped mid-handler) —
/// handled by the [`UnknownOutcome`] policy.
pub(crate) struct ClaimGuard<S: IdempotencyStore> {
    pub(crate) store: S,
    pub(crate) record: RecordKey,
    pub(crate) owner: Owner,
    pub(crate) retention: Duration,
    pub(crate) lease: Duration,
    pub(crate) unknown: UnknownOutcome,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) armed: bool,
}

impl<S: IdempotencyStore> ClaimGuard<S> {
    pub(crate) async fn complete(mut self, response: Bytes) {
        self.armed = false;
        let complete =
            self.store
                .complete(&self.record, &self.owner, response.clone(), self.retention);
        match Deadline::bound(self.deadline, complete).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                target: "palisade::idempotency",
                "lease lost before the response was stored; it will not be replayed"
            ),
            // The claim is still ours (it is not released): keep trying while it lasts, so a
            // store that returns within the lease still records the response.
            Err(error) => {
                tracing::error!(
                    target: "palisade::idempotency",
                    %error,
                    "could not store the response; retrying while the claim lasts"
                );
                let (store, record, owner) =
                    (self.store.clone(), self.record.clone(), self.owner.clone());
                let (retention, within) = (self.retention, self.lease * 2 / 3);
                spawn(async move {
                    retry_complete(store, record, owner, response, retention, within).await;
                });
            }
        }
    }

    pub(crate) async fn release(mut self) {
        self.armed = false;
        let (store, record, owner) = (self.store.clone(), self.record.clone(), self.owner.clone());
        let retention = self.retention;
        let release = async move {
            if let Err(error) = store.release(&record, &owner, retention).await {
                tracing::warn!(
                    target: "palisade::idempotency",
                    %error,
                    "could not release the claim; it frees itself when the lease runs out"
                );
            }
        };
        // The answer waits no longer than the budget; the release carries on behind it.
        Deadline::finish(self.deadline, release).await;
    }

    // A failed answer (5xx, failed gRPC status): released if the handler marked it
    // `NotApplied`, else an unknown outcome.
    pub(crate) async fn failed(self, response: &http::Extensions) {
        if response.get::<NotApplied>().is_some() {
            self.release().await;
        } else {
            self.unknown().await;
        }
    }

    pub(crate) async fn unknown(self) {
        count("unknown");
        match self.unknown {
            UnknownOutcome::Release => self.release().await,
            UnknownOutcome::KeepClaim => self.keep(),
        }
    }

    // Leaves the claim to expire with its lease (no longer renewed).
    fn keep(mut self) {
        self.armed = false;
        tracing::warn!(
            target: "palisade::idempotency",
            "outcome unknown: the claim is kept until its lease ends"
        );
    }
}

impl<S: IdempotencyStore> Drop for ClaimGuard<S> {
    // Dropped armed: the request future was dropped mid-handler, or the handler panicked.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        count("unknown");
        if self.unknown == UnknownOutcome::KeepClaim {
            return;
        }
        let store = self.store.clone();
        let record = self.record.clone();
        let owner = self.owner.clone();
        let retention = self.retention;
        spawn(async move {
            let _ = store.release(&record, &owner, retention).await;
        });
    }
}

fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
    }
}

/// Stores the response with growing pauses until the store answers or `within` has passed.
async fn retry_complete<S: IdempotencyStore>(
    store: S,
    record: RecordKey,
    owner: Owner,
    response: Bytes,
    retention: Duration,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut tries = 0;
    let mut pause = Duration::from_millis(50);
    while Instant::now() + pause < deadline {
        tokio::time::sleep(pause).await;
        tries += 1;
        let (base, cap) = (Duration::from_millis(50), Duration::from_secs(2));
        pause = backoff::delay(Jitter::Equal, base, cap, tries, pause, random::unit());
        match store
            .complete(&record, &owner, response.clone(), retention)
            .await
        {
            Ok(true) => {
                tracing::info!(target: "palisade::idempotency", "response stored on a retry");
                return;
            }
            Ok(false) => break,
            Err(_) => continue,
        }
    }
    tracing::error!(
        target: "palisade::idempotency",
        "the response was never stored; a retry after the lease runs the request again"
    );
}
