//! A tonic gRPC service behind palisade's rate limit and circuit breaker layers.
//!
//! ```text
//! cargo run -p palisade-examples --bin grpc-quotes        # GRPC_ADDR (default 127.0.0.1:50051)
//! ```
//!
//! `quotes.Quotes/Get` takes `{"sku": "…"}` and answers `{"sku": "…", "price_cents": N}`, in
//! JSON (a tonic codec, so the example needs no protobuf code generation; with prost the
//! layers are the same). The SKU `"broken"` simulates a failing dependency (`UNAVAILABLE`).
//!
//! - Rate limit per `x-api-key` metadata (`GRPC_RATE_CAPACITY`, default 10, refilled 1/s):
//!   over it, `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`.
//! - Circuit breaker on the service's own failures (gRPC `UNAVAILABLE`, `INTERNAL`…): after
//!   4 of the last 4 calls fail it opens for `GRPC_BREAKER_OPEN_MS` (default 5000) and answers
//!   `UNAVAILABLE` with a pushback at once, without calling the service.

use std::{convert::Infallible, future::Future, pin::Pin, task::Poll, time::Duration};

use palisade::{
    breaker::{
        BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, GrpcFailures, OpenDuration, Respond,
    },
    core::responder::Grpc,
    key::Header,
    ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket},
};
use palisade_examples::JsonCodec;
use serde_json::{Value, json};
use tonic::{Status, server::NamedService};
use tower::ServiceBuilder;

/// `quotes.Quotes`.
#[derive(Clone)]
struct Quotes;

impl NamedService for Quotes {
    const NAME: &'static str = "quotes.Quotes";
}

impl tower::Service<http::Request<tonic::body::Body>> for Quotes {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != "/quotes.Quotes/Get" {
                let (parts, ()) = Status::unimplemented("unknown method")
                    .into_http::<()>()
                    .into_parts();
                return Ok(http::Response::from_parts(
                    parts,
                    tonic::body::Body::empty(),
                ));
            }
            let get = tower::service_fn(|request: tonic::Request<Value>| async move {
                let sku = request.into_inner()["sku"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Status::invalid_argument("sku must be a string"))?;
                if sku == "broken" {
                    return Err(Status::unavailable("the pricing database is down"));
                }
                let price = 100 + sku.bytes().map(u64::from).sum::<u64>() % 900;
                Ok(tonic::Response::new(
                    json!({ "sku": sku, "price_cents": price }),
                ))
            });
            Ok(tonic::server::Grpc::new(JsonCodec)
                .unary(get, request)
                .await)
        })
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let addr: std::net::SocketAddr = std::env::var("GRPC_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(([127, 0, 0, 1], 50051).into());
    let policy = Policy::new(
        "quotes",
        TokenBucket::new(env_number("GRPC_RATE_CAPACITY", 10), 1.0).expect("valid bucket"),
    )
    .expect("valid policy");
    let breaker = CircuitBreaker::new(
        BreakerPolicy::builder("quotes")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate(1.0)
            .half_open_probes(1)
            .open_for(OpenDuration::fixed(Duration::from_millis(env_number(
                "GRPC_BREAKER_OPEN_MS",
                5000,
            ))))
            .build()
            .expect("valid breaker"),
    );
    // Outermost first: the rate limit refuses before the breaker counts anything.
    let layers = ServiceBuilder::new()
        .layer(
            RateLimitLayer::builder(MemoryStore::new(), policy)
                .key(Header::new("x-api-key"))
                .responder(Grpc)
                .build(),
        )
        .layer(
            CircuitBreakerLayer::new(breaker)
                .classify(GrpcFailures)
                .on_open(Respond(Grpc)),
        )
        .into_inner();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| {
            eprintln!("grpc-quotes: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
    let local = listener.local_addr().expect("bound");
    println!("grpc listening on http://{local}");
    let serve = tonic::transport::Server::builder()
        .layer(layers)
        .add_service(Quotes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        );
    if let Err(e) = serve.await {
        eprintln!("grpc-quotes: {e}");
        std::process::exit(1);
    }
}
