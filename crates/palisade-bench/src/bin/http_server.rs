//! axum hello world on one worker thread, bare or behind a rate limiter, for `wrk`.
//!
//! `http_server <bare|palisade|palisade-redis|governor|governor-headers> <port>`
//!
//! Every limiter is configured so that every request is allowed: the load measures the
//! overhead of a decision, keyed by the client IP as a real deployment would be.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use palisade_ratelimit::{Gcra, MemoryStore, Policy, RateLimitLayer, RedisStore};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".into());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(3100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = Router::new().route("/", get(|| async { "Hello, World!" }));
        let policy = Policy::new(
            "bench",
            Gcra::new(1_000_000, Duration::from_secs(1)).unwrap(),
        )
        .unwrap();
        let app = match variant.as_str() {
            "bare" => app,
            "palisade" => app.layer(RateLimitLayer::new(MemoryStore::new(), policy)),
            "palisade-redis" => {
                let client = palisade_testkit::connect_url(
                    &palisade_testkit::redis_url(),
                    Duration::from_secs(3),
                )
                .await
                .expect("redis");
                app.layer(RateLimitLayer::new(
                    RedisStore::new(client).with_prefix("bench"),
                    policy,
                ))
            }
            "governor" => {
                let config = GovernorConfigBuilder::default()
                    .per_nanosecond(1)
                    .burst_size(1_000_000_000)
                    .finish()
                    .unwrap();
                app.layer(GovernorLayer::new(config))
            }
            "governor-headers" => {
                let config = GovernorConfigBuilder::default()
                    .per_nanosecond(1)
                    .burst_size(1_000_000_000)
                    .use_headers()
                    .finish()
                    .unwrap();
                app.layer(GovernorLayer::new(config))
            }
            other => panic!("unknown variant {other}"),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}
