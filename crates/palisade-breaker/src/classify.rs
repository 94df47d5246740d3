//! Which results count as failures: pluggable, with HTTP and gRPC defaults.

use crate::Outcome;

/// Decides how a call's result counts.
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

/// HTTP: 5xx responses and every error (connection errors, timeouts) are failures; 1xx–4xx are
/// successes — a 404 says nothing about the upstream's health.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpFailures;

impl<B, E> Classify<http::Response<B>, E> for HttpFailures {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// gRPC: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL` and `UNKNOWN` (read from a
/// trailers-only response's `grpc-status`), 5xx and errors are failures.
///
/// Statuses sent in trailers after a body are not visible when the response head arrives;
/// classify those with a custom [`Classify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcFailures;

impl<B, E> Classify<http::Response<B>, E> for GrpcFailures {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Err(_) => Outcome::Failure,
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(response) => match palisade_core::wire::grpc_status(response.headers()) {
                // UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE
                Some(2 | 4 | 13 | 14) => Outcome::Failure,
                _ => Outcome::Success,
            },
        }
    }
}

/// Any `Err` is a failure, any `Ok` a success: for non-HTTP services.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAreFailures;

impl<Res, E> Classify<Res, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// A closure as a classifier.
#[derive(Clone)]
pub struct ClassifyFn<F>(pub F);

impl<F, Res, E> Classify<Res, E> for ClassifyFn<F>
where
    F: Fn(&Result<Res, E>) -> Outcome + Clone + Send + Sync + 'static,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        (self.0)(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(status: Option<&str>) -> Result<http::Response<()>, ()> {
        let mut b = http::Response::builder().status(200);
        if let Some(s) = status {
            b = b.header("grpc-status", s);
        }
        Ok(b.body(()).unwrap())
    }

    #[test]
    fn grpc_failures_are_the_transient_codes() {
        for code in ["2", "4", "13", "14"] {
            assert_eq!(
                GrpcFailures.classify(&grpc(Some(code))),
                Outcome::Failure,
                "{code}"
            );
        }
        for code in ["0", "3", "5", "7", "8", "16"] {
            assert_eq!(
                GrpcFailures.classify(&grpc(Some(code))),
                Outcome::Success,
                "{code}"
            );
        }
        assert_eq!(GrpcFailures.classify(&grpc(None)), Outcome::Success);
        assert_eq!(
            GrpcFailures.classify(&Err::<http::Response<()>, ()>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn http_failures_are_5xx_and_errors() {
        let r = |s: u16| Ok::<_, ()>(http::Response::builder().status(s).body(()).unwrap());
        assert_eq!(HttpFailures.classify(&r(503)), Outcome::Failure);
        assert_eq!(HttpFailures.classify(&r(404)), Outcome::Success);
        assert_eq!(HttpFailures.classify(&r(429)), Outcome::Success);
        assert_eq!(
            HttpFailures.classify(&Err::<http::Response<()>, ()>(())),
            Outcome::Failure
        );
    }
}
