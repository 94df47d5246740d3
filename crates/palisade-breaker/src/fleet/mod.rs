//! Fleet-wide breaker state through Redis: when one instance opens, the others learn it, and
//! only one instance at a time probes a sick upstream. [`Fleet`] runs `scripts/fleet.lua`;
//! [`state`] is the script's pure twin.

pub mod state;

use std::{
    sync::{Arc, LazyLock, atomic::Ordering},
    time::Duration,
};

use palisade_core::{
    key::Key,
    redis::{Arg, DECISION_TIMEOUT, RedisBackend, RedisClient, RedisScript},
};
use tokio::sync::mpsc;

use crate::{
    CircuitBreaker, State,
    breaker::{FleetEvent, FleetLink},
};

static FLEET: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/fleet.lua")));

/// Shares a breaker's openings across every instance using the same Redis and breaker name.
///
/// Per-process breakers each need `threshold` failures before they open, so a fleet of N
/// instances hits a sick upstream about N times as hard before it is spared. Joined to a fleet,
/// an instance that opens publishes `open until T` (Redis server time); the others read it
/// every `sync_every` (default 250 ms) and open for the rest of the period. When the period
/// ends, an instance may probe only while it holds the fleet's probe lease, which one
/// instance at a time gets — only an instance that has calls waiting asks for it, and only
/// after the fleet's open period. When that probe round succeeds it publishes the recovery,
/// and every other open instance closes at its next sync without probing: the upstream sees
/// **one probe round for the fleet**, not one per instance. Only the instance holding the probe
/// lease can close the fleet, and an opening published meanwhile takes the lease away, so a
/// late close never wipes a fresh opening.
///
/// Best effort by design: if Redis is unreachable, every instance keeps its own breaker
/// (calls are bounded by a timeout and failures are logged); nothing waits on Redis on the call
/// path — the closed path stays lock-free and local.
///
/// ```no_run
/// # async fn demo(client: impl palisade_core::redis::RedisClient) {
/// use palisade_breaker::{BreakerPolicy, CircuitBreaker, Fleet};
///
/// let breaker = CircuitBreaker::new(BreakerPolicy::builder("payments-api").build().unwrap());
/// breaker.join_fleet(Fleet::new(client));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Fleet<C> {
    backend: RedisBackend<C>,
    interval: Duration,
    lease: Duration,
}

impl<C: RedisClient> Fleet<C> {
    /// A fleet on `client` (any [`RedisClient`]): keys under `palisade`, synced every 250 ms,
    /// 50 ms Redis timeout ([`DECISION_TIMEOUT`]), 5 s probe lease.
    pub fn new(client: C) -> Self {
        Fleet {
            backend: RedisBackend::new(client, "breaker", DECISION_TIMEOUT),
            interval: Duration::from_millis(250),
            lease: Duration::from_secs(5),
        }
    }

    /// Keys under `prefix` instead of `palisade`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.backend = self.backend.with_prefix(prefix);
        self
    }

    /// Bounds each Redis call (default 50 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.backend = self.backend.with_timeout(timeout);
        self
    }

    /// How often the fleet state is read (default 250 ms).
    pub fn sync_every(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long one instance may hold the probe lease (default 5 s); released as soon as its
    /// probes decide. An instance that gets the lease and then sees no call keeps the others
    /// waiting that long, so keep it short.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

impl CircuitBreaker {
    /// Joins the fleet sharing this breaker's name: spawns a background task on the current
    /// tokio runtime that lives as long as the breaker. Joining twice has no effect.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn join_fleet<C>(&self, fleet: Fleet<C>)
    where
        C: RedisClient,
    {
        let (outbox, inbox) = mpsc::unbounded_channel();
        let link = FleetLink {
            may_probe: false.into(),
            wants_probe: false.into(),
            outbox,
            interval: fleet.interval,
        };
        if self.inner_fleet().set(link).is_err() {
            return;
        }
        let name = Key::from(self.policy().name());
        let keys = Arc::new([
            fleet.backend.key("open", &name),
            fleet.backend.key("probe", &name),
        ]);
        let id = format!("{:016x}", crate::breaker::instance_id());
        tokio::spawn(sync(self.downgrade(), fleet, keys, id, inbox));
    }
}

async fn sync<C>(
    breaker: std::sync::Weak<crate::breaker::Inner>,
    fleet: Fleet<C>,
    keys: Arc<[String; 2]>,
    id: String,
    mut inbox: mpsc::UnboundedReceiver<FleetEvent>,
) where
    C: RedisClient,
{
    let call = |op: &'static str, ms: u64| {
        let (backend, keys, id) = (&fleet.backend, keys.clone(), id.as_str());
        async move {
            let args = [Arg::from(op), Arg::from(id), Arg::Int(ms as i64)];
            let reply: Result<Vec<i64>, _> = backend.run(&FLEET, &keys[..], &args).await;
            match reply {
                Ok(r) if r.len() == 4 => Some(Reply {
                    now: r[0],
                    open_until: r[1],
                    holder: r[2] == 1,
                    recovered: r[3] == 1,
                }),
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(target: "palisade::breaker", %error, op, "fleet sync failed; acting locally");
                    None
                }
            }
        }
    };
    // The recovery marker outlives many syncs, so every instance sees it.
    let marker_ms = (fleet.interval * 40)
        .max(Duration::from_secs(10))
        .as_millis() as u64;
    let mut tick = tokio::time::interval(fleet.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Local transitions first: an opening is published before the next read, so a
            // stale recovery marker never closes a breaker that has just opened here.
            biased;
            event = inbox.recv() => {
                let Some(event) = event else { return };
                match event {
                    FleetEvent::Opened(wait) => { call("open", wait.as_millis() as u64).await; }
                    FleetEvent::Closed => { call("close", marker_ms).await; }
                }
            }
            _ = tick.tick() => {
                let Some(breaker) = CircuitBreaker::upgrade(&breaker) else { return };
                let Some(link) = breaker.inner_fleet().get() else { return };
                match breaker.state() {
                    State::Closed => {
                        if let Some(reply) = call("read", 0).await
                            && reply.open_until > reply.now
                        {
                            breaker.open_remotely(reply.remaining());
                        }
                    }
                    State::Open => {
                        // Ask for the probe lease only with demand: an idle instance that won
                        // it would hold every other instance up for a whole lease.
                        let due = breaker.open_remaining() <= fleet.interval
                            && link.wants_probe.load(Ordering::Acquire);
                        let op = if due { "lease" } else { "read" };
                        if let Some(reply) = call(op, fleet.lease.as_millis() as u64).await {
                            if reply.recovered {
                                // Another instance's probe round closed the fleet: one round
                                // for the fleet, not one per instance.
                                breaker.close_remotely();
                                continue;
                            }
                            if reply.open_until > reply.now {
                                breaker.open_remotely(reply.remaining());
                            }
                            link.may_probe.store(
                                reply.holder && reply.open_until <= reply.now,
                                Ordering::Release,
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What the fleet script answers.
struct Reply {
    /// Redis server time, ms.
    now: i64,
    /// The fleet's open period end, ms (0: not open).
    open_until: i64,
    /// Whether this instance holds the probe lease.
    holder: bool,
    /// Whether the last fleet event is a successful probe round.
    recovered: bool,
}

impl Reply {
    fn remaining(&self) -> Duration {
        Duration::from_millis((self.open_until - self.now).max(0) as u64)
    }
}
