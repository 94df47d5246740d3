//! The pure part of a layer decision: the store's answer, the policy and the mode give a
//! [`Verdict`] — call the inner service (with or without headers), or refuse.

use http::Response;
use palisade_core::{BackendError, Responder};

use palisade_core::responder::BackendUnavailable;

use crate::{Decision, Policy, RateLimited, policy::Outcome};

/// What to do with a request once the store has answered.
pub(crate) enum Verdict {
    /// Call the inner service; add these headers to its response.
    Proceed(Option<Decision>),
    /// Answer with this rejection.
    Reject(Refusal),
}

pub(crate) enum Refusal {
    Limited(RateLimited),
    Backend(BackendUnavailable),
}

impl Refusal {
    pub(crate) fn render<R: Responder<B>, B>(self, responder: &R, legacy: bool) -> Response<B> {
        match self {
            Refusal::Limited(mut limited) => {
                limited.set_legacy_headers(legacy);
                responder.respond(&limited)
            }
            Refusal::Backend(unavailable) => responder.respond(&unavailable),
        }
    }
}

/// The pure part of a layer decision: store answer + policy + mode → verdict.
pub(crate) fn verdict(
    policy: &Policy,
    shadow: bool,
    result: Result<Decision, BackendError>,
) -> Verdict {
    match result {
        Ok(decision) if decision.is_allowed() => {
            policy.record(Outcome::Allowed);
            Verdict::Proceed((!shadow).then_some(decision))
        }
        Ok(_) if shadow => {
            policy.record(Outcome::ShadowRejected);
            tracing::info!(
                target: "palisade::ratelimit",
                policy = policy.name(),
                "shadow mode: request would have been rate limited"
            );
            Verdict::Proceed(None)
        }
        Ok(decision) => {
            policy.record(Outcome::Rejected);
            tracing::debug!(target: "palisade::ratelimit", policy = policy.name(), "rate limited");
            Verdict::Reject(Refusal::Limited(RateLimited::new(decision, false)))
        }
        Err(error) => {
            if policy.on_backend_error().apply("ratelimit", &error) {
                Verdict::Proceed(None)
            } else {
                Verdict::Reject(Refusal::Backend(BackendUnavailable {
                    layer: "ratelimit",
                    source: error,
                }))
            }
        }
    }
}
