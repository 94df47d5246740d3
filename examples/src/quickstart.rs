//! The quick start: an axum service with per-route and per-tier rate limits.
//!
//! ```text
//! cargo run -p palisade-examples --bin quickstart
//! curl -i localhost:3000/                 # RateLimit-Policy / RateLimit on every response
//! curl -i -H 'x-api-key: demo' -H 'x-plan: pro' localhost:3000/reports
//! ```
//!
//! In-memory by default (one process). Set `REDIS_URL=redis://127.0.0.1:6379` to share the
//! limits between several copies of the service. `PORT` picks the port (default 3000).

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    routing::{get, post},
};
use palisade::{
    key::{ClientIp, Header, KeyExtractor, RequestHead},
    prelude::*,
    ratelimit::{RateLimitStore, SelectPolicy},
};
use serde::Deserialize;

/// Policies as an operator would write them.
const POLICIES: &str = r#"
[login]
name = "login"
on_backend_error = "fail_closed"   # never let brute force through while Redis is down
[[login.limits]]
name = "per-minute"
algorithm = "sliding_window_log"
quota = 10
window = "1m"

[anonymous]
name = "anonymous"
[[anonymous.limits]]
name = "burst"
algorithm = "token_bucket"
capacity = 10
refill_per_second = 0.5

[free]
name = "free"
[[free.limits]]
name = "burst"
algorithm = "token_bucket"
capacity = 100
refill_per_second = 5
[[free.limits]]
name = "daily"
algorithm = "fixed_window"
quota = 10000
window = "1day"

[pro]
name = "pro"
[[pro.limits]]
name = "burst"
algorithm = "gcra"
quota = 1000
window = "1m"
burst = 100
"#;

#[derive(Deserialize)]
struct Policies {
    login: Policy,
    anonymous: Policy,
    free: Policy,
    pro: Policy,
}

fn app<St: RateLimitStore>(store: St, policies: Policies) -> Router {
    // Tier from a header for the demo; a real service reads it from its auth layer's
    // extensions.
    let tiers = Tiers::new(policies.anonymous)
        .tier("free", policies.free)
        .tier("pro", policies.pro)
        .select_by(|req: &RequestHead<'_>| req.headers.get("x-plan")?.to_str().ok());
    let by_api_key_or_ip = Header::new("x-api-key").or(ClientIp::direct());
    let reports_cost = |req: &RequestHead<'_>| {
        if req.uri.path() == "/reports" { 10 } else { 1 }
    };

    Router::new()
        .route(
            "/login",
            post(|| async { "welcome" })
                .route_layer(RateLimitLayer::new(store.clone(), policies.login)),
        )
        .merge(
            Router::new()
                .route("/", get(|| async { "hello from palisade" }))
                .route("/reports", get(|| async { Json(["q1", "q2", "q3"]) }))
                .layer(tier_layer(store, tiers, by_api_key_or_ip, reports_cost)),
        )
}

fn tier_layer<St, P, K, C>(store: St, tiers: P, key: K, cost: C) -> RateLimitLayer<St, K, P>
where
    St: RateLimitStore,
    P: SelectPolicy,
    K: KeyExtractor,
    C: Fn(&RequestHead<'_>) -> u64 + Send + Sync + 'static,
{
    RateLimitLayer::builder(store, tiers)
        .key(key)
        .cost(cost)
        .legacy_headers(true)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,palisade=debug".into()),
        )
        .init();
    let policies: Policies = toml::from_str(POLICIES)?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    let app = match std::env::var("REDIS_URL") {
        Ok(url) => {
            use fred::prelude::*;
            let client = Builder::from_config(Config::from_url(&url)?)
                .set_policy(ReconnectPolicy::new_constant(0, 500))
                .build()?;
            client.init().await?;
            tracing::info!(%url, "rate limits shared through Redis");
            app(
                RedisStore::new(client).with_timeout(Duration::from_millis(50)),
                policies,
            )
        }
        Err(_) => {
            tracing::info!("rate limits in memory (this process only); set REDIS_URL to share");
            app(MemoryStore::new(), policies)
        }
    };

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
