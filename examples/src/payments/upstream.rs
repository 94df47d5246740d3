//! The fake upstream (served by this process on `/upstream/*`) and the client stack that calls
//! it over real HTTP: circuit breaker ⊃ bulkhead ⊃ retry ⊃ per-attempt timeout.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade::{
    breaker::{Breaker, CircuitBreaker, CircuitBreakerLayer, Classify, Outcome, Respond},
    bulkhead::{Bulkhead, BulkheadLayer, Pool, PoolConfig},
    core::responder::Rejected,
    retry::{HttpRetry, ReplayBody, Retry, RetryLayer, RetryPolicy},
};
use serde::Deserialize;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::{config::QuoteRoute, problem};

/// How the fake upstream behaves, set by `PUT /upstream/behaviour`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    pub fail_rate: f64,
    #[serde(default)]
    pub latency_ms: u64,
}

/// The fake upstream's state.
#[derive(Clone, Default)]
pub struct FakeUpstream(Arc<Mutex<Behaviour>>);

impl FakeUpstream {
    fn get(&self) -> Behaviour {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `GET /upstream/price`: waits `latency_ms`, then fails (503) with probability `fail_rate`.
pub async fn price(State(upstream): State<FakeUpstream>) -> Response {
    let behaviour = upstream.get();
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    if random_unit() < behaviour.fail_rate {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
    }
    Json(serde_json::json!({ "price_cents": 1234 })).into_response()
}

/// `PUT /upstream/behaviour`.
pub async fn set_behaviour(State(upstream): State<FakeUpstream>, body: Bytes) -> Response {
    let behaviour: Behaviour = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return problem::invalid(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("invalid behaviour: {e}"),
            );
        }
    };
    if !(0.0..=1.0).contains(&behaviour.fail_rate) || behaviour.latency_ms > 60_000 {
        return problem::invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fail_rate must be within 0.0–1.0 and latency_ms at most 60000",
        );
    }
    *upstream.0.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    StatusCode::NO_CONTENT.into_response()
}

fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// Counts the attempts of one logical call (the retry layer copies request extensions into
/// every attempt).
#[derive(Clone, Default)]
pub struct Attempts(pub Arc<AtomicU32>);

type HyperClient = Client<HttpConnector, ReplayBody<Empty<Bytes>>>;

/// The innermost service: one HTTP attempt, counted, with the body boxed so refusals can be
/// rendered in the same type.
#[derive(Clone)]
pub struct Attempt {
    client: HyperClient,
}

impl Service<Request<ReplayBody<Empty<Bytes>>>> for Attempt {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody<Empty<Bytes>>>) -> Self::Future {
        if let Some(attempts) = request.extensions().get::<Attempts>() {
            attempts.0.fetch_add(1, Ordering::SeqCst);
        }
        let client = self.client.clone();
        Box::pin(async move {
            let response = client.request(request).await?;
            Ok(response.map(Body::new))
        })
    }
}

/// The stack: breaker ⊃ bulkhead ⊃ retry ⊃ attempt. The breaker ignores the bulkhead's own
/// refusals (they say nothing about the upstream's health).
pub type QuoteClient = Breaker<Bulkhead<Retry<Attempt, HttpRetry>>, UpstreamHealth, Respond>;

/// HTTP failures as the breaker counts them, except the bulkhead's own refusals.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHealth;

impl<B, E> Classify<http::Response<B>, E> for UpstreamHealth {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if response.extensions().get::<Rejected>().is_some() => Outcome::Ignored,
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// The quote client and the handles `/ready` and `/resilience` read.
#[derive(Clone)]
pub struct Quotes {
    pub client: QuoteClient,
    pub breaker: CircuitBreaker,
    pub pool: Pool,
    pub upstream_uri: http::Uri,
}

impl Quotes {
    pub fn new(route: &QuoteRoute, upstream_uri: http::Uri) -> Quotes {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let breaker = CircuitBreaker::new(route.breaker.clone());
        let pool = Pool::new(PoolConfig::single(
            "upstream",
            route.concurrency,
            route.queue,
            route.max_wait,
        ));
        let retry = RetryLayer::new(
            RetryPolicy::new(route.attempts).attempt_timeout(route.attempt_timeout),
        );
        let stack = CircuitBreakerLayer::new(breaker.clone())
            .classify(UpstreamHealth)
            .layer(
                BulkheadLayer::new(pool.clone(), pool.lowest_tier())
                    .layer(retry.layer(Attempt { client })),
            );
        Quotes {
            client: stack,
            breaker,
            pool,
            upstream_uri,
        }
    }
}

/// `GET /quote`.
pub async fn quote(State(quotes): State<Quotes>) -> Response {
    let attempts = Attempts::default();
    let mut request = Request::get(quotes.upstream_uri.clone())
        .body(Empty::<Bytes>::new())
        .expect("static request");
    request.extensions_mut().insert(attempts.clone());
    let result = quotes.client.clone().oneshot(request).await;
    let tried = attempts.0.load(Ordering::SeqCst);
    match result {
        // A refusal (circuit open, bulkhead full): already problem+json with Retry-After.
        Ok(response) if response.extensions().get::<Rejected>().is_some() => {
            response.into_response()
        }
        Ok(response) if response.status() == StatusCode::OK => {
            let body = match response.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return problem::upstream(&format!("reading the upstream answer: {e}"), tried);
                }
            };
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(json) if json["price_cents"].is_u64() => Json(serde_json::json!({
                    "price_cents": json["price_cents"],
                    "attempts": tried,
                }))
                .into_response(),
                _ => problem::upstream("the upstream answered without a price", tried),
            }
        }
        Ok(response) => problem::upstream(
            &format!("the upstream answered {}", response.status()),
            tried,
        ),
        Err(error) => problem::upstream(&format!("the upstream call failed: {error}"), tried),
    }
}
