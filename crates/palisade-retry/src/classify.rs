//! Which results are worth another attempt, and when.

use std::{error::Error as StdError, time::Duration};

use http::StatusCode;
use palisade_core::responder::{Rejected, is_refusal};
use tower::BoxError;

use crate::AttemptTimedOut;

/// Whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again; the server asked to wait this long (`Retry-After`, gRPC pushback) if `Some`.
    Retry(Option<Duration>),
    /// Return this result.
    Stop,
}

/// Classifies an attempt's result.
pub trait RetryClassify<Res>: Clone + Send + Sync + 'static {
    /// Whether (and when) to retry after `result`.
    fn classify(&self, result: &Result<Res, BoxError>) -> RetryDecision;
}

/// The HTTP defaults: retry 408, 429, 500, 502, 503 and 504 (honouring `Retry-After` and
/// `grpc-retry-pushback-ms`), connection errors and timeouts; never any other status (400,
/// 401, 403, 404, 405, 409, 422…), unknown errors, or a palisade refusal (an open circuit, a
/// local rate limit), which another attempt cannot fix.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRetry;

impl<B> RetryClassify<http::Response<B>> for HttpRetry {
    fn classify(&self, result: &Result<http::Response<B>, BoxError>) -> RetryDecision {
        match result {
            Ok(response) => {
                if response.extensions().get::<Rejected>().is_some() {
                    return RetryDecision::Stop;
                }
                match response.status() {
                    StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::INTERNAL_SERVER_ERROR
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => match server_wait(response.headers()) {
                        Some(Pushback::Wait(wait)) => RetryDecision::Retry(Some(wait)),
                        Some(Pushback::DoNotRetry) => RetryDecision::Stop,
                        None => RetryDecision::Retry(None),
                    },
                    _ => RetryDecision::Stop,
                }
            }
            Err(error) if is_transient(error.as_ref()) => RetryDecision::Retry(None),
            Err(_) => RetryDecision::Stop,
        }
    }
}

pub use palisade_core::wire::{Pushback, server_wait};

/// Connection failures and timeouts, anywhere in the error's source chain; never a palisade
/// refusal.
pub fn is_transient(error: &(dyn StdError + 'static)) -> bool {
    if is_refusal(error) {
        return false;
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<AttemptTimedOut>() || is_tokio_timeout(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
            );
        }
        current = e.source();
    }
    false
}

/// Whether `e` is tokio's own timeout error (a `tokio::time::timeout` around the call).
#[cfg(feature = "layer")]
fn is_tokio_timeout(e: &(dyn StdError + 'static)) -> bool {
    e.is::<tokio::time::error::Elapsed>()
}

/// Without tokio there is no tokio timeout to recognise.
#[cfg(not(feature = "layer"))]
fn is_tokio_timeout(_: &(dyn StdError + 'static)) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn statuses_follow_the_seed() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                HttpRetry.classify(&Ok(response(status, &[]))),
                RetryDecision::Retry(None)
            );
        }
        for status in [200, 400, 401, 403, 404, 405, 409, 422, 501] {
            assert_eq!(
                HttpRetry.classify(&Ok(response(status, &[]))),
                RetryDecision::Stop
            );
        }
        let mut refused = response(503, &[]);
        refused.extensions_mut().insert(Rejected);
        assert_eq!(HttpRetry.classify(&Ok(refused)), RetryDecision::Stop);
    }

    #[test]
    fn retry_after_and_pushback() {
        assert_eq!(
            HttpRetry.classify(&Ok(response(429, &[("retry-after", "3")]))),
            RetryDecision::Retry(Some(Duration::from_secs(3)))
        );
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        match HttpRetry.classify(&Ok(response(503, &[("retry-after", &later)]))) {
            RetryDecision::Retry(Some(wait)) => {
                assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            HttpRetry.classify(&Ok(response(503, &[("grpc-retry-pushback-ms", "250")]))),
            RetryDecision::Retry(Some(Duration::from_millis(250)))
        );
        assert_eq!(
            HttpRetry.classify(&Ok(response(503, &[("grpc-retry-pushback-ms", "-1")]))),
            RetryDecision::Stop
        );
    }

    #[test]
    fn errors() {
        let refused: BoxError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert_eq!(
            HttpRetry.classify(&Err::<http::Response<()>, _>(refused)),
            RetryDecision::Retry(None)
        );
        let unknown: BoxError = "mystery".into();
        assert_eq!(
            HttpRetry.classify(&Err::<http::Response<()>, _>(unknown)),
            RetryDecision::Stop
        );
        let open: BoxError = Box::new(palisade_breaker::CircuitOpen {
            breaker: "b".into(),
            state: palisade_breaker::State::Open,
            retry_after: None,
        });
        assert_eq!(
            HttpRetry.classify(&Err::<http::Response<()>, _>(open)),
            RetryDecision::Stop
        );
    }
}
