//! Serving on the open internet: the limits `axum::serve` leaves out (shared by the example
//! binaries).
//!
//! A server that waits forever for a client's headers is one `nc` loop away from running out of
//! file descriptors (20 000 connections that each sent one header line did it to this service
//! before these limits). Every connection here is bounded:
//!
//! - **header read timeout** (`PAYMENTS_HEADER_TIMEOUT`, default 10 s): a connection that has
//!   not sent complete request headers within it is closed — on a fresh connection, and
//!   between requests on a kept-alive one (so it is the idle timeout too);
//! - **body read timeout and size** (`PAYMENTS_BODY_TIMEOUT`, default 10 s; 64 KiB): applied by
//!   the payments binary's `read_body_within` — a body still arriving after it is 408, a larger
//!   one 413;
//! - **connection limit** (`PAYMENTS_MAX_CONNECTIONS`, default 1024): beyond it the server
//!   stops accepting (the kernel backlog queues) until a connection ends, so descriptors never
//!   run out;
//! - **graceful shutdown**: no new connections; running requests finish (at most 30 s).

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use palisade::key::PeerAddr;
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt;

use crate::problem;

/// How long and how much one connection may take.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Complete request headers must arrive within this (also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// The largest request body read.
    pub max_body: usize,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves. Each request carries
/// its connection's [`PeerAddr`] (for per-client keys).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Above `check_head`'s limits, so it answers with problem+json; only heads beyond these
        // get hyper's own bare 431.
        .max_headers(4 * MAX_HEADERS)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: at the limit, stop accepting rather than run out of descriptors.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = connection_service(app.clone(), peer);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("connections still open 30 s after shutdown began; closing");
        }
    }
}

fn connection_service(
    app: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        app.clone().oneshot(request.map(Body::new))
    })
}

/// The longest request target answered (longer: 414).
pub const MAX_URI: usize = 8 * 1024;
/// The most header fields answered (more: 431).
pub const MAX_HEADERS: usize = 100;
/// The most header bytes answered, names and values (more: 431).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Middleware: refuses an over-long target (414) or header block (431) with problem+json,
/// before anything else looks at the request.
pub async fn check_head(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI {
        return problem::head_too_large(
            StatusCode::URI_TOO_LONG,
            &format!("the request target is over {MAX_URI} bytes"),
        );
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return problem::head_too_large(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("at most {MAX_HEADERS} header fields and {MAX_HEADER_BYTES} bytes"),
        );
    }
    next.run(request).await
}

/// Middleware: reads the whole request body within `limits.body_timeout` and up to
/// `limits.max_body` bytes (408 / 413 problem+json otherwise), then hands it on buffered, so no
/// layer or handler behind it waits on a slow client.
pub async fn read_body_within(limits: ServeLimits, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, limits.max_body);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            problem::body_too_large(&format!("the body is over {} bytes", limits.max_body))
        }
        Ok(Err(_)) => problem::bad_request("the body could not be read"),
        Err(_) => problem::timeout(&format!(
            "the body did not arrive within {:?}",
            limits.body_timeout
        ))
        .into_response(),
    }
}

/// Resolves on Ctrl-C, or on SIGTERM from a container runtime or process manager.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
