//! Which policy applies to a request: one for the whole layer, or one per tier.

use std::{collections::HashMap, fmt};

use palisade_core::key::RequestHead;

use crate::Policy;

/// Chooses the [`Policy`] for a request, or none to let it through unlimited.
pub trait SelectPolicy: Send + Sync + 'static {
    /// The policy for `req`.
    fn select<'a>(&'a self, req: &RequestHead<'_>) -> Option<&'a Policy>;
}

/// One policy for every request through the layer.
impl SelectPolicy for Policy {
    fn select<'a>(&'a self, _req: &RequestHead<'_>) -> Option<&'a Policy> {
        Some(self)
    }
}

/// A policy per tier (anonymous, free, pro, enterprise…), the tier read from each request.
///
/// ```
/// use std::time::Duration;
/// use palisade_core::key::RequestHead;
/// use palisade_ratelimit::{Gcra, Policy, SelectPolicy, Tiers};
///
/// #[derive(Clone, Copy)]
/// enum Plan { Free, Pro }
///
/// let per_minute = |name: &str, n| Policy::new(name, Gcra::new(n, Duration::from_secs(60)).unwrap()).unwrap();
/// let tiers = Tiers::new(per_minute("anonymous", 10))
///     .tier("free", per_minute("free", 100))
///     .tier("pro", per_minute("pro", 1000))
///     .select_by(|req: &RequestHead<'_>| {
///         req.extensions.get::<Plan>().map(|plan| match plan {
///             Plan::Free => "free",
///             Plan::Pro => "pro",
///         })
///     });
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Plan::Pro);
/// assert_eq!(tiers.select(&RequestHead::from(&request)).unwrap().name(), "pro");
/// let anonymous = http::Request::new(());
/// assert_eq!(tiers.select(&RequestHead::from(&anonymous)).unwrap().name(), "anonymous");
/// ```
pub struct Tiers<F = fn(&RequestHead<'_>) -> Option<&'static str>> {
    default: Policy,
    tiers: HashMap<String, Policy>,
    tier_of: F,
}

impl Tiers {
    /// Tiers whose unknown or missing tier gets `default`.
    pub fn new(default: Policy) -> Self {
        Tiers {
            default,
            tiers: HashMap::new(),
            tier_of: |_| None,
        }
    }
}

impl<F> Tiers<F> {
    /// Adds the policy of tier `name`.
    pub fn tier(mut self, name: &str, policy: Policy) -> Self {
        self.tiers.insert(name.to_owned(), policy);
        self
    }

    /// Reads the tier name of a request with `tier_of` (from a header, an extension…).
    pub fn select_by<G>(self, tier_of: G) -> Tiers<G>
    where
        G: for<'r> Fn(&'r RequestHead<'r>) -> Option<&'r str> + Send + Sync + 'static,
    {
        Tiers {
            default: self.default,
            tiers: self.tiers,
            tier_of,
        }
    }
}

impl<F> SelectPolicy for Tiers<F>
where
    F: for<'r> Fn(&'r RequestHead<'r>) -> Option<&'r str> + Send + Sync + 'static,
{
    fn select<'a>(&'a self, req: &RequestHead<'_>) -> Option<&'a Policy> {
        let policy = (self.tier_of)(req)
            .and_then(|tier| self.tiers.get(tier))
            .unwrap_or(&self.default);
        Some(policy)
    }
}

impl<F> fmt::Debug for Tiers<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("default", &self.default.name())
            .field("tiers", &self.tiers.keys().collect::<Vec<_>>())
            .finish()
    }
}
