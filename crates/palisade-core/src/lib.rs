//! Shared pieces of the palisade layers.
//!
//! Every palisade layer needs the same few things, and they live here:
//!
//! - [`key`]: which client a request belongs to — the [`KeyExtractor`](key::KeyExtractor)
//!   trait and ready extractors (client IP behind trusted proxies, a header, an authenticated
//!   principal, the matched route, a closure, combinations);
//! - [`redis_key`]: Redis key names with Cluster hash tags and hashing of unsafe material;
//! - [`redis`] (feature `redis`): the client trait (fred and redis-rs adapters), one `EVALSHA`
//!   per decision reloaded on `NOSCRIPT`, and the backend value every Redis store embeds;
//! - [`OnBackendError`]: fail open or fail closed when the backend cannot decide;
//! - [`registry`]: one value per key (breakers, pools), bounded, idle entries evicted first;
//! - [`token`]: owner tokens for claims and locks; [`random`]: the one random source;
//! - [`body`]: bodies read into memory up to a limit, and sent on (whole, or what was read
//!   then the rest);
//! - [`backoff`]: jittered backoff (full, equal, decorrelated, constant), pure;
//! - [`wire`]: `Retry-After`, `grpc-status` and `grpc-retry-pushback-ms`, read and written here;
//! - `deadline` (feature `tokio`): one deadline per request, carried through the layers;
//! - [`responder`]: rejections as typed values, rendered as RFC 9457 problem+json or (feature
//!   `grpc`) as `tonic::Status`.
//!
//! ```
//! use palisade_core::{
//!     key::{ClientIp, Header, KeyExtractor, PeerAddr, RequestHead},
//!     redis_key::RedisKeyBuilder,
//! };
//!
//! let extractor = Header::new("x-api-key").or(ClientIp::direct());
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(PeerAddr("192.0.2.7:5000".parse().unwrap()));
//!
//! let key = extractor.extract(&RequestHead::from(&request)).unwrap();
//! let redis_key = RedisKeyBuilder::new("ratelimit").key("api", &key);
//! assert_eq!(redis_key, "palisade:ratelimit:api:{ip:192.0.2.7}");
//! ```
//!
//! # Features
//! - `fred` (default): [`redis`] with the fred client; `redis-rs`: [`redis`] with redis-rs
//!   (both may be on); `redis`: the client trait alone, for another client.
//! - `grpc`: [`responder::Grpc`].
//! - `axum`: [`key::MatchedRoute`] and reading axum's `ConnectInfo<SocketAddr>`.
//! - `tokio` (on with `redis`): [`backend::compensate`], undoing calls whose reply came late.
#![warn(missing_docs)]

pub mod backend;
pub mod backoff;
pub mod body;
#[cfg(feature = "tokio")]
pub mod deadline;
mod either;
pub mod key;
#[cfg(feature = "tokio")]
pub mod lease;
mod problem;
pub mod random;
#[cfg(feature = "redis")]
pub mod redis;
pub mod redis_key;
pub mod registry;
pub mod responder;
pub mod shutdown;
pub mod token;
pub mod wire;

pub use backend::{BackendError, OnBackendError};
pub use either::{Either, EitherFuture};
pub use problem::ProblemDetails;
pub use responder::{ProblemJson, Rejection, Responder};

/// Gives a tower service that wraps `self.inner: $S` the accessors every tower middleware has:
/// `get_ref`, `get_mut` and `into_inner` (one definition for every palisade service, as
/// tower-http does). Use inside an `impl` block of the service.
///
/// ```
/// pub struct Logged<S> {
///     inner: S,
/// }
///
/// impl<S> Logged<S> {
///     palisade_core::inner_service_accessors!(S);
/// }
///
/// let mut service = Logged { inner: 7 };
/// *service.get_mut() += 1;
/// assert_eq!(*service.get_ref(), 8);
/// assert_eq!(service.into_inner(), 8);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    ($S:ident) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> $S {
            self.inner
        }
    };
}
