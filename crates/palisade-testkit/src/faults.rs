//! The fault matrix: every state-changing backend operation, run under every fault.
//!
//! A [`FaultRig`] is a private `redis-server` with a [`FaultProxy`] in front. The code under
//! test talks to Redis through the proxy ([`FaultRig::faulty`]); the test checks the
//! invariants through a direct connection ([`FaultRig::observer`]), which no fault touches.
//! [`FaultRig::inject`] runs one operation under one [`Fault`] and heals the fault afterwards,
//! so the test then asserts what must hold once the fault has ended: no orphaned lock, claim
//! or permit beyond the documented bound, no second holder, no duplicate execution, no hang
//! beyond the configured deadline.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use palisade_testkit::faults::{Fault, FaultRig};
//!
//! let rig = FaultRig::start().await;
//! let client = rig.faulty().await;
//! for fault in Fault::matrix() {
//!     let (done, took) = rig.inject(fault, async { /* an operation on `client` */ }).await;
//!     assert!(took < Duration::from_secs(2), "{fault:?} hung");
//!     // … the invariants, checked through `rig.observer().await` …
//! #   let _ = done;
//! }
//! # }
//! ```

use std::{future::Future, net::SocketAddr, time::Duration};

use fred::clients::Client;
use tokio::time::Instant;

use crate::{FaultMode, FaultProxy, RedisNode, connect_url};

/// One fault of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Replies arrive after the client's timeout (the proxy delays each way by
    /// [`FaultRig::SLOW`]): the call may land after the caller gave up.
    DelayedReply,
    /// The connection forwards nothing while the call runs (a partition); what was sent is
    /// delivered when the fault heals — a late landing again.
    BlackHole,
    /// Every connection is reset (TCP RST), and new ones too, while the call runs.
    Reset,
    /// The server is frozen (SIGSTOP) while the call runs, then thawed (SIGCONT): everything
    /// queued in its socket runs then.
    Paused,
    /// No network fault: the caller's future is dropped after this long — a client hanging up
    /// at whichever await point the call has reached.
    Cancelled(Duration),
}

impl Fault {
    /// Every fault, with cancellation at several points of a call (before it is sent, on the
    /// wire, once it is answered).
    pub fn matrix() -> [Fault; 7] {
        [
            Fault::DelayedReply,
            Fault::BlackHole,
            Fault::Reset,
            Fault::Paused,
            Fault::Cancelled(Duration::ZERO),
            Fault::Cancelled(Duration::from_micros(300)),
            Fault::Cancelled(Duration::from_millis(2)),
        ]
    }

    /// The faults a server shared with other tests can take (all but [`Fault::Paused`]).
    pub fn network_matrix() -> [Fault; 6] {
        [
            Fault::DelayedReply,
            Fault::BlackHole,
            Fault::Reset,
            Fault::Cancelled(Duration::ZERO),
            Fault::Cancelled(Duration::from_micros(300)),
            Fault::Cancelled(Duration::from_millis(2)),
        ]
    }
}

/// A fault proxy in front of a server, and (for Redis) the private server itself.
pub struct FaultRig {
    node: Option<RedisNode>,
    proxy: FaultProxy,
    upstream: SocketAddr,
}

impl FaultRig {
    /// The delay each way under [`Fault::DelayedReply`]: above every client timeout the
    /// matrix tests configure (100 ms).
    pub const SLOW: Duration = Duration::from_millis(300);

    /// How long a fault lasts at least: a call under it has run into its timeout by then.
    pub const HOLD: Duration = Duration::from_millis(400);

    /// A private `redis-server` behind a fault proxy.
    pub async fn start() -> FaultRig {
        let node = RedisNode::start();
        let upstream: SocketAddr = ([127, 0, 0, 1], node.port()).into();
        let proxy = FaultProxy::start(upstream).await;
        FaultRig {
            node: Some(node),
            proxy,
            upstream,
        }
    }

    /// A fault proxy in front of `upstream` (a shared server such as PostgreSQL: it cannot be
    /// paused, so use [`Fault::network_matrix`]).
    pub async fn in_front_of(upstream: SocketAddr) -> FaultRig {
        FaultRig {
            node: None,
            proxy: FaultProxy::start(upstream).await,
            upstream,
        }
    }

    /// The proxy's address (what the code under test connects to).
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// The server's own address (for observers).
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// A Redis client through the proxy: it sees the faults (and reconnects after them).
    pub async fn faulty(&self) -> Client {
        connect_url(&self.proxy.redis_url(), Duration::from_secs(3))
            .await
            .expect("connect through the fault proxy")
    }

    /// A redis-rs connection through the proxy: it sees the faults (and reconnects after them).
    pub async fn faulty_redis_rs(&self) -> redis::aio::ConnectionManager {
        crate::connect_redis_rs(&self.proxy.redis_url(), Duration::from_secs(3))
            .await
            .expect("connect redis-rs through the fault proxy")
    }

    /// A redis-rs connection straight to the server: no fault touches it.
    pub async fn observer_redis_rs(&self) -> redis::aio::ConnectionManager {
        crate::connect_redis_rs(
            &format!("redis://{}", self.upstream),
            Duration::from_secs(3),
        )
        .await
        .expect("connect redis-rs to the private Redis")
    }

    /// A Redis client straight to the server: no fault touches it.
    pub async fn observer(&self) -> Client {
        connect_url(
            &format!("redis://{}", self.upstream),
            Duration::from_secs(3),
        )
        .await
        .expect("connect to the private Redis")
    }

    /// Runs `op` under `fault` and heals the fault: what `op` returned (`None` when it was
    /// cancelled) and how long it ran.
    pub async fn inject<T>(
        &self,
        fault: Fault,
        op: impl Future<Output = T>,
    ) -> (Option<T>, Duration) {
        let started = Instant::now();
        let outcome = match fault {
            Fault::Cancelled(after) => tokio::time::timeout(after, op).await.ok(),
            Fault::DelayedReply => {
                self.proxy.set(FaultMode::Latency(Self::SLOW));
                let done = op.await;
                // Let the late reply (and whatever it undoes) through before healing.
                tokio::time::sleep(Self::SLOW * 3).await;
                Some(done)
            }
            Fault::BlackHole | Fault::Reset => {
                self.proxy.set(if fault == Fault::Reset {
                    FaultMode::Reset
                } else {
                    FaultMode::BlackHole
                });
                Some(hold_then(op, || self.proxy.set(FaultMode::Pass)).await)
            }
            Fault::Paused => {
                let node = self
                    .node
                    .as_ref()
                    .expect("Fault::Paused needs a private server (FaultRig::start)");
                node.pause();
                Some(hold_then(op, || node.resume()).await)
            }
        };
        let took = started.elapsed();
        self.heal();
        (outcome, took)
    }

    /// Switches the proxy's fault by hand (for a fault that outlasts one operation); end it
    /// with [`heal`](Self::heal).
    pub fn proxy_set(&self, mode: FaultMode) {
        self.proxy.set(mode);
    }

    /// Ends every fault.
    pub fn heal(&self) {
        self.proxy.set(FaultMode::Pass);
        if let Some(node) = &self.node {
            node.resume();
        }
    }
}

/// Runs `op` with the fault on for [`FaultRig::HOLD`] — whether `op` fails fast (a reset) or
/// waits on a reply — then `heal`s it and lets `op` finish (a call that outlives its own
/// timeout shows in the time `inject` reports).
async fn hold_then<T>(op: impl Future<Output = T>, heal: impl FnOnce()) -> T {
    let mut op = std::pin::pin!(op);
    let hold = tokio::time::sleep(FaultRig::HOLD);
    let early = tokio::select! {
        done = &mut op => Some(done),
        () = hold => None,
    };
    if early.is_some() {
        tokio::time::sleep(FaultRig::HOLD).await;
    }
    heal();
    match early {
        Some(done) => done,
        None => op.await,
    }
}

/// Polls `check` every 20 ms until it holds or `within` has passed: whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Turns fault-matrix scenarios into one test per client: each scenario is an
/// `async fn name<C: RedisClient>(rig: FaultRig, faulty: C, observer: C)` and runs once on fred
/// and once on redis-rs (modules `fred_client` and `redis_rs_client`), each on a fresh rig.
#[macro_export]
macro_rules! on_both_clients {
    ($($scenario:ident),* $(,)?) => {
        mod fred_client {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let rig = $crate::faults::FaultRig::start().await;
                    let (faulty, observer) = (rig.faulty().await, rig.observer().await);
                    super::$scenario(rig, faulty, observer).await;
                }
            )*
        }

        mod redis_rs_client {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let rig = $crate::faults::FaultRig::start().await;
                    let faulty = rig.faulty_redis_rs().await;
                    let observer = rig.observer_redis_rs().await;
                    super::$scenario(rig, faulty, observer).await;
                }
            )*
        }
    };
}
