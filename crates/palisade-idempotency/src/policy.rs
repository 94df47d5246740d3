//! The layer's settings: [`InFlight`] and the configuration every clone of the service
//! shares.

use std::time::Duration;

use http::{HeaderName, Method};
use palisade_core::OnBackendError;

use crate::{Fingerprint, UnknownOutcome};

/// What a request does when another request with the same key is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// Refuse at once with 409 and `Retry-After: 1` (the IETF draft's answer; the default).
    Reject,
    /// Wait up to this long for the first request to finish, then replay its response (or,
    /// if it failed, run); still running after the wait → 409.
    Wait(Duration),
}

/// Settings shared by every clone of the service.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) methods: Vec<Method>,
    pub(crate) required: bool,
    pub(crate) namespace: String,
    pub(crate) lease: Duration,
    pub(crate) retention: Duration,
    pub(crate) store_client_errors: bool,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) in_flight: InFlight,
    pub(crate) on_backend_error: OnBackendError,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) excluded_headers: Vec<HeaderName>,
    pub(crate) keep_set_cookie: bool,
    pub(crate) unknown_outcome: UnknownOutcome,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            methods: vec![Method::POST, Method::PUT, Method::PATCH],
            required: false,
            namespace: "default".to_owned(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            store_client_errors: false,
            max_request_body: 1 << 20,
            max_response_body: 1 << 20,
            in_flight: InFlight::Reject,
            on_backend_error: OnBackendError::FailClosed,
            fingerprint: Fingerprint::default(),
            excluded_headers: Vec::new(),
            keep_set_cookie: false,
            unknown_outcome: UnknownOutcome::KeepClaim,
        }
    }
}
