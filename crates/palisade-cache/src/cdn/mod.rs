//! The origin side: [`CdnHeadersLayer`] stamps a route's [`CdnPolicy`] (from code or TOML)
//! on its responses, for the caches in front of the service.

mod layer;
mod policy;

pub use layer::{CdnFuture, CdnHeadersLayer, WithCdnHeaders};
pub use policy::{CdnHeaders, CdnPolicy, CdnPolicyError};
