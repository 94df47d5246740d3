//! One breaker per key (per upstream authority, per tenant…) from one layer, with bounded
//! memory.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use palisade_core::{
    key::{Key, KeyExtractor, RequestHead},
    registry::{Idle, KeyedRegistry},
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BreakerPolicy, CircuitBreaker, State, classify::Classify, classify::HttpFailures,
    future::ResponseFuture, rejection::OnOpen, rejection::Respond,
};

/// Breakers by key, created on first use from one policy.
///
/// At most `max_keys` breakers are kept; when a new key arrives at the cap, a closed breaker
/// (which holds nothing worth keeping but its window) is dropped to make room — an open one
/// only if every breaker is open. Each breaker is named `<policy>/<key>` in its events and
/// tracing, while its **metrics carry only the policy name**: a key in a label would make one
/// series per key ever seen, unbounded as keys come and go. The state gauge then counts
/// breakers per state (`palisade_breaker_state{breaker="upstreams", state="open"}` = how many
/// keys are open), and calls, rejections and transitions add up across keys.
///
/// ```
/// use palisade_breaker::{BreakerPolicy, BreakerRegistry};
///
/// let registry = BreakerRegistry::new(BreakerPolicy::builder("upstreams").build().unwrap(), 256);
/// let a = registry.get(&"api.example.com".into());
/// let again = registry.get(&"api.example.com".into());
/// a.force_open();
/// assert_eq!(again.state(), palisade_breaker::State::ForcedOpen);
/// assert_eq!(registry.get(&"other.example.com".into()).state(), palisade_breaker::State::Closed);
/// ```
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<Registry>,
}

struct Registry {
    policy: BreakerPolicy,
    breakers: KeyedRegistry<CircuitBreaker>,
}

/// A closed breaker holds nothing worth keeping but its window.
impl Idle for CircuitBreaker {
    fn is_idle(&self) -> bool {
        self.state() == State::Closed
    }
}

impl BreakerRegistry {
    /// Breakers following `policy`, at most `max_keys` of them (at least 1).
    pub fn new(policy: BreakerPolicy, max_keys: usize) -> Self {
        BreakerRegistry {
            inner: Arc::new(Registry {
                policy,
                breakers: KeyedRegistry::new(max_keys),
            }),
        }
    }

    /// The breaker of `key`, created if needed.
    pub fn get(&self, key: &Key) -> CircuitBreaker {
        let inner = &*self.inner;
        inner.breakers.get_or_insert_with(key, || {
            let mut policy = inner.policy.clone();
            policy.name = format!("{}/{}", inner.policy.name, key).into();
            CircuitBreaker::with_metrics_name(policy, inner.policy.name.clone())
        })
    }

    /// How many breakers exist.
    pub fn len(&self) -> usize {
        self.inner.breakers.len()
    }

    /// Whether none exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every breaker's state, for a health endpoint.
    pub fn snapshots(&self) -> Vec<crate::Snapshot> {
        let breakers = self.inner.breakers.values();
        breakers.iter().map(CircuitBreaker::snapshot).collect()
    }
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("policy", &self.inner.policy.name)
            .field("breakers", &self.len())
            .finish()
    }
}

/// Keys requests by the target authority (`host:port`), for per-upstream breakers around a
/// client. Requests without one share the key `global`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UriAuthority;

impl KeyExtractor for UriAuthority {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, palisade_core::key::KeyError> {
        Ok(req.uri.authority().map_or(Key::Global, |a| {
            Key::text("authority", a.as_str().as_bytes())
        }))
    }
}

/// Guards each key's calls with that key's breaker from a [`BreakerRegistry`]: one sick
/// upstream is cut off while the others keep flowing.
#[derive(Debug, Clone)]
pub struct KeyedCircuitBreakerLayer<K = UriAuthority, C = HttpFailures, O = Respond> {
    registry: BreakerRegistry,
    key: K,
    classify: C,
    on_open: O,
}

impl KeyedCircuitBreakerLayer {
    /// Per-authority breakers from `registry`, HTTP classification, 503 problem+json refusals.
    pub fn new(registry: BreakerRegistry) -> Self {
        KeyedCircuitBreakerLayer {
            registry,
            key: UriAuthority,
            classify: HttpFailures,
            on_open: Respond::default(),
        }
    }
}

impl<K, C, O> KeyedCircuitBreakerLayer<K, C, O> {
    /// Keys with `key` instead of the URI authority (a request without a key uses `global`).
    pub fn key<K2: KeyExtractor>(self, key: K2) -> KeyedCircuitBreakerLayer<K2, C, O> {
        KeyedCircuitBreakerLayer {
            registry: self.registry,
            key,
            classify: self.classify,
            on_open: self.on_open,
        }
    }

    /// Classifies results with `classify`.
    pub fn classify<C2>(self, classify: C2) -> KeyedCircuitBreakerLayer<K, C2, O> {
        KeyedCircuitBreakerLayer {
            registry: self.registry,
            key: self.key,
            classify,
            on_open: self.on_open,
        }
    }

    /// Refuses with `on_open`.
    pub fn on_open<O2>(self, on_open: O2) -> KeyedCircuitBreakerLayer<K, C, O2> {
        KeyedCircuitBreakerLayer {
            registry: self.registry,
            key: self.key,
            classify: self.classify,
            on_open,
        }
    }
}

impl<S, K: Clone, C: Clone, O: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, C, O> {
    type Service = KeyedBreaker<S, K, C, O>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreaker {
            inner,
            registry: self.registry.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            on_open: self.on_open.clone(),
        }
    }
}

/// The service of [`KeyedCircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct KeyedBreaker<S, K, C, O> {
    inner: S,
    registry: BreakerRegistry,
    key: K,
    classify: C,
    on_open: O,
}

impl<S, K, C, O> KeyedBreaker<S, K, C, O> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, K, C, O, B> Service<http::Request<B>> for KeyedBreaker<S, K, C, O>
where
    S: Service<http::Request<B>>,
    K: KeyExtractor,
    C: Classify<S::Response, S::Error>,
    O: OnOpen<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let key = self
            .key
            .extract(&RequestHead::from(&req))
            .unwrap_or(Key::Global);
        let breaker = self.registry.get(&key);
        crate::service::guarded_call(
            &breaker,
            &mut self.inner,
            req,
            &self.classify,
            &self.on_open,
        )
    }
}
