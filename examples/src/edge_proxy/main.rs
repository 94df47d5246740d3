//! An RFC 9111 caching reverse proxy: every request forwarded to one origin, responses
//! cached as their own headers allow (stale-while-revalidate, stale-if-error,
//! `CDN-Cache-Control`, `Cache-Status`, coalescing, surrogate-key purge).
//!
//! ```text
//! EDGE_UPSTREAM=http://127.0.0.1:8000 cargo run --release -p palisade-examples --bin edge-proxy
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `EDGE_UPSTREAM` | (required) | the origin's base URL, e.g. `http://127.0.0.1:8000` |
//! | `EDGE_ADDR` | `127.0.0.1:8080` | where clients connect (port 0: any; printed as `edge-proxy listening on http://ADDR`) |
//! | `EDGE_ADMIN_ADDR` | `127.0.0.1:8081` | the admin port: `POST /purge`, `GET /stats`, `GET /health` |
//! | `EDGE_CACHE_MAX_BYTES` | 268435456 (256 MiB) | the memory store's bound |
//! | `EDGE_UPSTREAM_TIMEOUT` | `30s` | the longest one origin exchange may take (then 504) |
//! | `REDIS_URL` | (none) | store on Redis, shared by every instance: storage, purges and request coalescing fleet-wide |
//! | `EDGE_REDIS_PREFIX` | `palisade-edge` | the Redis key prefix (one fleet per prefix) |

mod admin;
mod origin;

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{Router, body::Body};
use http::{Request, Uri};
use palisade::{
    Either,
    cache::{HttpCache, MemoryStore, store::RedisStore},
};
use palisade_examples::serve::{ServeLimits, serve, shutdown_signal};
use tower::{Layer, ServiceExt};

use origin::Origin;

/// Memory for one instance, Redis for a fleet.
pub type EdgeStore = Either<MemoryStore, RedisStore<fred::clients::Client>>;

/// What the environment configures.
struct Settings {
    upstream: Uri,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    max_bytes: u64,
    upstream_timeout: Duration,
    redis_url: Option<String>,
    redis_prefix: String,
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let upstream = var("EDGE_UPSTREAM")
        .ok_or("EDGE_UPSTREAM is required (the origin's base URL, e.g. http://127.0.0.1:8000)")?;
    let upstream: Uri = upstream
        .trim()
        .parse()
        .map_err(|e| format!("EDGE_UPSTREAM `{upstream}` is not a URL: {e}"))?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        return Err(format!(
            "EDGE_UPSTREAM `{upstream}` must be an http:// URL with a host"
        ));
    }
    let addr = |name: &str, default: &str| -> Result<SocketAddr, String> {
        let value = var(name).unwrap_or_else(|| default.to_owned());
        value
            .trim()
            .parse()
            .map_err(|e| format!("{name} `{value}` is not an address (host:port): {e}"))
    };
    let max_bytes = match var("EDGE_CACHE_MAX_BYTES") {
        None => 256 << 20,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("EDGE_CACHE_MAX_BYTES `{v}` is not a byte count: {e}"))?,
    };
    let upstream_timeout = match var("EDGE_UPSTREAM_TIMEOUT") {
        None => Duration::from_secs(30),
        Some(v) => humantime_serde::re::humantime::parse_duration(v.trim())
            .map_err(|e| format!("EDGE_UPSTREAM_TIMEOUT `{v}` is not a duration: {e}"))?,
    };
    Ok(Settings {
        upstream,
        addr: addr("EDGE_ADDR", "127.0.0.1:8080")?,
        admin_addr: addr("EDGE_ADMIN_ADDR", "127.0.0.1:8081")?,
        max_bytes,
        upstream_timeout,
        redis_url: var("REDIS_URL"),
        redis_prefix: var("EDGE_REDIS_PREFIX").unwrap_or_else(|| "palisade-edge".to_owned()),
    })
}

#[tokio::main]
async fn main() {
    palisade_examples::init_tracing("info");
    let settings = match settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("edge-proxy: {error}");
            std::process::exit(2);
        }
    };
    let store: EdgeStore = match &settings.redis_url {
        None => Either::Left(MemoryStore::new(settings.max_bytes)),
        Some(url) => {
            let client = palisade_examples::redis::connect(url, "edge-proxy").await;
            tracing::info!(redis = %url, prefix = %settings.redis_prefix, "cache on Redis, shared by the fleet");
            Either::Right(RedisStore::new(client).with_prefix(&settings.redis_prefix))
        }
    };
    let cache = HttpCache::new(store).name("palisade-edge");
    let proxy = cache.layer().layer(Origin::new(
        settings.upstream.clone(),
        settings.upstream_timeout,
    ));
    let app =
        Router::new().fallback_service(tower::service_fn(move |mut request: Request<Body>| {
            let proxy = proxy.clone();
            // Before the cache reads the request: it must see what the origin will see (a field
            // named by `Connection` must not select a `Vary` variant the origin never saw).
            origin::drop_hop_by_hop(request.headers_mut());
            origin::add_via(request.headers_mut());
            async move {
                let Ok(response) = proxy.oneshot(request).await;
                Ok::<_, Infallible>(response.map(Body::new))
            }
        }));
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("edge-proxy: cannot listen on {}: {error}", settings.addr);
            std::process::exit(1);
        }
    };
    let admin_listener = match tokio::net::TcpListener::bind(settings.admin_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "edge-proxy: cannot listen on {}: {error}",
                settings.admin_addr
            );
            std::process::exit(1);
        }
    };
    let (addr, admin_addr) = (
        listener.local_addr().expect("bound address"),
        admin_listener.local_addr().expect("bound address"),
    );
    println!("edge-proxy listening on http://{addr}");
    println!("edge-proxy admin on http://{admin_addr}");
    tracing::info!(upstream = %settings.upstream, %addr, %admin_addr, "edge-proxy started");
    let limits = ServeLimits {
        max_connections: 4096,
        ..ServeLimits::default()
    };
    let admin = admin::router(cache);
    tokio::spawn(serve(
        admin_listener,
        admin,
        ServeLimits::default(),
        std::future::pending(),
    ));
    serve(listener, app, limits, shutdown_signal()).await;
}
