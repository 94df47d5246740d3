//! One pool per key (per dependency, per upstream authority) from one layer, with bounded
//! memory.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{
    ProblemJson, Responder,
    key::{Key, KeyExtractor, RequestHead},
    registry::{Idle, KeyedRegistry},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Pool, PoolConfig,
    future::{ResponseFuture, start},
    pool_tier::PoolTier,
    reservation::Reservation,
    tier::TierId,
};

/// Pools by key, created on first use from one configuration; at most `max_keys`, idle pools
/// evicted first.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::{PoolConfig, PoolRegistry};
///
/// let registry = PoolRegistry::new(PoolConfig::single("upstreams", 10, 20, Duration::from_secs(1)), 128);
/// let a = registry.get(&"billing.internal".into());
/// let b = registry.get(&"search.internal".into());
/// let _busy = a.try_acquire(a.lowest_tier()).unwrap();
/// assert_eq!(b.snapshot().tiers[0].active, 0, "each dependency has its own slots");
/// ```
#[derive(Clone)]
pub struct PoolRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    config: PoolConfig,
    pools: KeyedRegistry<Pool>,
}

/// A pool with nothing active or queued holds nothing but its configuration.
impl Idle for Pool {
    fn is_idle(&self) -> bool {
        self.snapshot()
            .tiers
            .iter()
            .all(|t| t.active == 0 && t.queued == 0)
    }
}

impl PoolRegistry {
    /// Pools shaped like `config`, at most `max_keys` (at least 1) of them.
    pub fn new(config: PoolConfig, max_keys: usize) -> Self {
        PoolRegistry {
            inner: Arc::new(RegistryInner {
                config,
                pools: KeyedRegistry::new(max_keys),
            }),
        }
    }

    /// The pool of `key`, created if needed. At the cap, an idle pool (nothing active or
    /// queued) makes room — a busy one only if none is idle, whose calls then finish in the
    /// evicted pool while new calls start in a fresh one.
    pub fn get(&self, key: &Key) -> Pool {
        let inner = &*self.inner;
        inner
            .pools
            .get_or_insert_with(key, || Pool::new(inner.config.clone()))
    }

    /// The configuration every pool is made from (for [`PoolConfig::tier`]).
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// How many pools exist.
    pub fn len(&self) -> usize {
        self.inner.pools.len()
    }

    /// Whether none exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for PoolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRegistry")
            .field("pools", &self.len())
            .finish_non_exhaustive()
    }
}

/// Runs each key's calls in that key's pool (one tier of it): a slow dependency fills its own
/// slots, not everyone's.
///
/// The key depends on the request, so the slot is taken in `call` (the future waits in the
/// key's queue), not in `poll_ready`; the inner service, readied in `poll_ready`, is called
/// once the slot is held (a fresh clone takes its place, so `S: Clone`).
#[derive(Debug, Clone)]
pub struct KeyedBulkheadLayer<K, R = ProblemJson> {
    registry: PoolRegistry,
    key: K,
    tier: TierId,
    responder: R,
    call_timeout: Option<Duration>,
}

impl<K: KeyExtractor> KeyedBulkheadLayer<K> {
    /// Calls keyed by `key` run in tier `tier` (from [`PoolRegistry::config`]) of their key's
    /// pool from `registry`.
    ///
    /// # Panics
    /// If the registry's configuration has no such tier.
    pub fn new(registry: PoolRegistry, key: K, tier: TierId) -> Self {
        assert!(
            tier.index() < registry.inner.config.tiers.len(),
            "no tier {} in bulkhead `{}`",
            tier.index(),
            registry.inner.config.name
        );
        KeyedBulkheadLayer {
            registry,
            key,
            tier,
            responder: ProblemJson,
            call_timeout: None,
        }
    }
}

impl<K, R> KeyedBulkheadLayer<K, R> {
    /// Renders refusals with `responder`.
    pub fn responder<R2>(self, responder: R2) -> KeyedBulkheadLayer<K, R2> {
        KeyedBulkheadLayer {
            registry: self.registry,
            key: self.key,
            tier: self.tier,
            responder,
            call_timeout: self.call_timeout,
        }
    }

    /// Cuts calls off after `timeout` (504), as [`BulkheadLayer::call_timeout`](crate::BulkheadLayer::call_timeout).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
}

impl<S, K: Clone, R: Clone> Layer<S> for KeyedBulkheadLayer<K, R> {
    type Service = KeyedBulkhead<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`KeyedBulkheadLayer`].
#[derive(Debug, Clone)]
pub struct KeyedBulkhead<S, K, R> {
    inner: S,
    layer: KeyedBulkheadLayer<K, R>,
}

impl<S, K, R> KeyedBulkhead<S, K, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, K, R, ReqB, ResB> Service<Request<ReqB>> for KeyedBulkhead<S, K, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    K: KeyExtractor,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = KeyedResponseFuture<S, R, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let key = self
            .layer
            .key
            .extract(&RequestHead::from(&req))
            .unwrap_or(Key::Global);
        let pool = self.layer.registry.get(&key);
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        KeyedResponseFuture {
            state: KeyedState::Acquiring {
                reservation: Reservation::new(PoolTier::new(pool, self.layer.tier)),
                waiting: Some((ready, req)),
                responder: self.layer.responder.clone(),
                call_timeout: self.layer.call_timeout,
            },
        }
    }
}

pin_project! {
    /// The response future of [`KeyedBulkhead`]: waits for a slot in the key's pool, then runs
    /// the call in it.
    pub struct KeyedResponseFuture<S, R, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: KeyedState<S, R, ReqB, ResB>,
    }
}

pin_project! {
    #[project = KeyedProj]
    enum KeyedState<S, R, ReqB, ResB>
    where
        S: Service<Request<ReqB>>,
    {
        Acquiring {
            reservation: Reservation<PoolTier>,
            waiting: Option<(S, Request<ReqB>)>,
            responder: R,
            call_timeout: Option<Duration>,
        },
        Started {
            #[pin]
            future: ResponseFuture<S::Future, PoolTier, R, ResB>,
        },
    }
}

impl<S, R, ReqB, ResB> Future for KeyedResponseFuture<S, R, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                KeyedProj::Acquiring {
                    reservation,
                    waiting,
                    responder,
                    call_timeout,
                } => {
                    ready!(reservation.poll(cx));
                    let (mut inner, req) = waiting
                        .take()
                        .expect("KeyedResponseFuture polled after completion");
                    let future = start(reservation, &mut inner, req, responder, *call_timeout);
                    state.set(KeyedState::Started { future });
                }
                KeyedProj::Started { future } => return future.poll(cx),
            }
        }
    }
}
