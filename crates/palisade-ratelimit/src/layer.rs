//! [`RateLimitLayer`] and its options.

use std::{fmt, sync::Arc};

use palisade_core::{
    ProblemJson,
    key::{ClientIp, KeyExtractor, RequestHead},
};
use tower_layer::Layer;

use crate::{MemoryStore, Policy, RateLimit, select::SelectPolicy, store::RateLimitStore};

/// The cost of a request, in units of the policy's quota.
pub type CostFn = Arc<dyn Fn(&RequestHead<'_>) -> u64 + Send + Sync>;

/// Rate-limits requests before they reach the inner service.
///
/// For each request the layer takes a key ([`KeyExtractor`], default: the client IP from the
/// connection), chooses a policy ([`SelectPolicy`]: one policy, or [`Tiers`](crate::Tiers)),
/// and asks the store. The decision is made **before** the inner service is called: a refused
/// request never reaches it. Allowed responses carry `RateLimit-Policy` and `RateLimit`
/// (optionally `X-RateLimit-*`); refused ones are rendered by the responder (default: 429
/// problem+json with `Retry-After`).
///
/// See the [crate docs](crate) for a complete axum example.
pub struct RateLimitLayer<St = MemoryStore, K = ClientIp, P = Policy, R = ProblemJson> {
    pub(crate) config: Arc<Config<St, K, P>>,
    pub(crate) responder: R,
}

pub(crate) struct Config<St, K, P> {
    pub(crate) store: St,
    pub(crate) key: K,
    pub(crate) policy: P,
    pub(crate) cost: Option<CostFn>,
    pub(crate) shadow: bool,
    pub(crate) legacy_headers: bool,
}

impl<St: RateLimitStore, P: SelectPolicy> RateLimitLayer<St, ClientIp, P, ProblemJson> {
    /// Limits by `policy` on `store`, keyed by the connection's peer address, with the default
    /// options. See [`builder`](Self::builder) for the others.
    pub fn new(store: St, policy: P) -> Self {
        Self::builder(store, policy).build()
    }

    /// Starts a layer with options (key, cost, shadow mode, legacy headers, responder).
    ///
    /// ```
    /// use palisade_core::key::Header;
    /// use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
    ///
    /// let layer = RateLimitLayer::builder(
    ///     MemoryStore::new(),
    ///     Policy::new("api", TokenBucket::new(100, 10.0).unwrap()).unwrap(),
    /// )
    /// .key(Header::new("x-api-key"))
    /// .cost(|req| if req.uri.path().starts_with("/bulk") { 50 } else { 1 })
    /// .legacy_headers(true)
    /// .build();
    /// ```
    pub fn builder(store: St, policy: P) -> RateLimitLayerBuilder<St, ClientIp, P, ProblemJson> {
        RateLimitLayerBuilder {
            config: Config {
                store,
                key: ClientIp::direct(),
                policy,
                cost: None,
                shadow: false,
                legacy_headers: false,
            },
            responder: ProblemJson,
        }
    }
}

/// Builds a [`RateLimitLayer`] with options.
pub struct RateLimitLayerBuilder<St, K, P, R> {
    config: Config<St, K, P>,
    responder: R,
}

impl<St, K, P, R> RateLimitLayerBuilder<St, K, P, R> {
    /// Keys requests with `key` (a header, a principal, the route, a combination…).
    pub fn key<K2: KeyExtractor>(self, key: K2) -> RateLimitLayerBuilder<St, K2, P, R> {
        let c = self.config;
        RateLimitLayerBuilder {
            config: Config {
                store: c.store,
                key,
                policy: c.policy,
                cost: c.cost,
                shadow: c.shadow,
                legacy_headers: c.legacy_headers,
            },
            responder: self.responder,
        }
    }

    /// Charges each request `cost(request)` units instead of 1 (e.g. 10 for `/generate`).
    pub fn cost<F>(mut self, cost: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> u64 + Send + Sync + 'static,
    {
        self.config.cost = Some(Arc::new(cost));
        self
    }

    /// Shadow mode: decide and record (metrics, tracing) but never reject and add no headers —
    /// for dark-launching a new limit.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.config.shadow = shadow;
        self
    }

    /// Also sends `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix
    /// seconds) for the tightest limit, for clients that predate the IETF fields.
    pub fn legacy_headers(mut self, legacy: bool) -> Self {
        self.config.legacy_headers = legacy;
        self
    }

    /// Renders rejections with `responder` (e.g. `palisade_core::responder::Grpc`).
    pub fn responder<R2>(self, responder: R2) -> RateLimitLayerBuilder<St, K, P, R2> {
        RateLimitLayerBuilder {
            config: self.config,
            responder,
        }
    }

    /// The layer.
    pub fn build(self) -> RateLimitLayer<St, K, P, R> {
        RateLimitLayer {
            config: Arc::new(self.config),
            responder: self.responder,
        }
    }
}

impl<St, K, P, R: Clone> Clone for RateLimitLayer<St, K, P, R> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            config: self.config.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<St, K, P, R: fmt::Debug> fmt::Debug for RateLimitLayer<St, K, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("shadow", &self.config.shadow)
            .field("legacy_headers", &self.config.legacy_headers)
            .field("responder", &self.responder)
            .finish_non_exhaustive()
    }
}

impl<S, St, K, P, R: Clone> Layer<S> for RateLimitLayer<St, K, P, R> {
    type Service = RateLimit<S, St, K, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            config: self.config.clone(),
            responder: self.responder.clone(),
        }
    }
}
