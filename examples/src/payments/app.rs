//! The routes and the layer stack of each.

use std::time::Duration;

use axum::{
    Extension, Json, Router,
    extract::{Path, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use http::{StatusCode, header};
use palisade::{
    breaker::State as BreakerState,
    core::deadline::{Deadline, DeadlineLayer},
    idempotency::{IdempotencyLayer, IdempotencyRecord, IdempotencyStore},
    key::{Caller, CallerKey, Header, path::decode_segment},
    lock::{LockLayer, Locker, PathSegment},
    ratelimit::{Policy, RateLimitLayer, RateLimitStore},
};
use serde::Serialize;
use tower::ServiceBuilder;

use crate::{
    config::Settings,
    ledger::Ledger,
    problem,
    serve::{check_head, read_body_within},
    upstream::{self, FakeUpstream, Quotes},
};

/// The backends one instance uses.
pub struct Backends<RS, IS, LK, LG> {
    pub rate_limits: RS,
    pub idempotency: IS,
    pub locks: LK,
    pub ledger: LG,
}

#[derive(Clone)]
struct Shared<LG> {
    ledger: LG,
    quotes: Quotes,
    rate_limit: Policy,
}

/// The whole service.
pub fn router<RS, IS, LK, LG>(
    settings: &Settings,
    backends: Backends<RS, IS, LK, LG>,
    quotes: Quotes,
) -> Router
where
    RS: RateLimitStore,
    IS: IdempotencyStore,
    LK: Locker,
    LG: Ledger,
{
    let route = &settings.payments;
    let api_keys = std::sync::Arc::new(route.api_keys.clone());
    // Outermost first: how often from this address → who you are → how often for this key (a
    // malformed request costs quota too) → is the request well formed (before any claim or
    // lock) → have we done this already → one at a time per order → the handler.
    let payment_stack = ServiceBuilder::new()
        // One budget for the whole request: every backend call below takes at most what is
        // left of it, so a stall cannot add timeout upon timeout.
        .layer(DeadlineLayer::new(route.request_budget))
        .layer(
            RateLimitLayer::builder(backends.rate_limits.clone(), route.ip_rate_limit.clone())
                .key(settings.client_ip.clone())
                .build(),
        )
        .layer(middleware::from_fn(move |request, next| {
            require_api_key(api_keys.clone(), request, next)
        }))
        .layer(
            RateLimitLayer::builder(backends.rate_limits, route.rate_limit.clone())
                // The caller's key, taken once by `require_api_key`.
                .key(Caller)
                .build(),
        )
        .layer(middleware::from_fn(validate_payment))
        .layer(
            // An unknown outcome (a 503 after a ledger write timed out) keeps the key claimed
            // until the lease ends; the ledger keys the charge by the record, so the retry
            // after the lease finds the charge instead of making a second one.
            IdempotencyLayer::new(backends.idempotency)
                .scope(Caller)
                .require_key()
                .namespace("payments")
                .lease(route.idempotency_lease)
                .max_request_body(64 * 1024)
                .retention(route.idempotency_retention),
        )
        .layer(
            LockLayer::new(backends.locks, PathSegment::new(1))
                .namespace("order")
                .wait(route.lock_wait),
        );
    let shared = Shared {
        ledger: backends.ledger,
        quotes: quotes.clone(),
        rate_limit: route.rate_limit.clone(),
    };
    let fake = FakeUpstream::default();
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "healthy"})) }),
        )
        .route("/ready", get(ready::<LG>))
        .route("/resilience", get(resilience::<LG>))
        .route(
            "/orders/{order_id}/payments",
            post(create_payment::<LG>).route_layer(payment_stack),
        )
        .route("/orders/{order_id}/charges", get(charges::<LG>))
        .with_state(shared)
        .route("/quote", get(upstream::quote).with_state(quotes))
        .route(
            "/upstream/price",
            get(upstream::price).with_state(fake.clone()),
        )
        .route(
            "/upstream/behaviour",
            put(upstream::set_behaviour).with_state(fake),
        )
        .fallback(|| async { problem::not_found() })
        .method_not_allowed_fallback(|| async { problem::method_not_allowed() })
        .layer(middleware::from_fn({
            let limits = settings.limits;
            move |request, next| read_body_within(limits, request, next)
        }))
        .layer(middleware::from_fn(check_head))
}

/// Authenticates the caller by `x-api-key` and carries its key ([`CallerKey`]) for every
/// layer after it: the header is looked up once, here, not by each layer again.
async fn require_api_key(
    known: std::sync::Arc<Option<Vec<String>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let value = request.headers().get("x-api-key");
    let accepted = match (value.map(|v| v.as_bytes()), known.as_ref()) {
        (Some(key), _) if key.is_empty() || key.len() > 256 => false,
        (Some(key), Some(known)) => known.iter().any(|k| k.as_bytes() == key),
        (Some(_), None) => true,
        (None, _) => false,
    };
    let Some(value) = value.filter(|_| accepted) else {
        return problem::unauthorized();
    };
    let caller = CallerKey(Header::key_of(value));
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[derive(Serialize)]
struct Payment {
    payment_id: String,
    order_id: String,
    amount_cents: u64,
    charge_seq: u64,
}

/// A payment request that passed validation (before any backend was asked anything).
#[derive(Debug, Clone)]
struct PaymentRequest {
    order_id: String,
    amount_cents: u64,
    work_ms: u64,
}

fn valid_order_id(order_id: &str) -> bool {
    !order_id.is_empty()
        && order_id.len() <= 128
        && order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Checks everything that needs no backend — the order id (decoded, as the router and the lock
/// see it), the content type, the JSON, the amount, the currency, `work_ms` — so a malformed
/// payment costs no claim and no lock (only its rate-limit token: floods of garbage are
/// throttled like any other traffic).
async fn validate_payment(mut request: Request, next: Next) -> Response {
    let segment = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .nth(1);
    let order_id = match segment.map(decode_segment) {
        Some(Ok(id)) if valid_order_id(&id) => id.into_owned(),
        _ => {
            return problem::invalid(
                StatusCode::BAD_REQUEST,
                "order_id must be 1–128 of [A-Za-z0-9-_.:]",
            );
        }
    };
    let json_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return problem::invalid(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    let work_ms = match query_param(request.uri().query(), "work_ms").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(ms)) if ms <= 5000 => ms,
        Some(_) => {
            return problem::invalid(StatusCode::UNPROCESSABLE_ENTITY, "work_ms must be 0–5000");
        }
    };
    // The body was read (bounded in size and time) by `read_body_within`.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(body) => body,
        Err(_) => {
            return problem::invalid(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB");
        }
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => {
            return problem::invalid(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    let amount = json["amount_cents"]
        .as_u64()
        .filter(|a| *a > 0 && *a <= 1_000_000_000_000);
    let currency = json["currency"]
        .as_str()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
    let (Some(amount_cents), Some(_currency)) = (amount, currency) else {
        return problem::invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_cents must be an integer > 0 and currency three letters",
        );
    };
    request = Request::from_parts(parts, axum::body::Body::from(body));
    request.extensions_mut().insert(PaymentRequest {
        order_id,
        amount_cents,
        work_ms,
    });
    next.run(request).await
}

/// The first value of `name` in a query string (percent-decoded).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(value: &str) -> String {
    decode_segment(&value.replace('+', " "))
        .map(|v| v.into_owned())
        .unwrap_or_else(|_| value.to_owned())
}

/// The payment's id: derived from its idempotency record, so a re-run answers the same id.
fn payment_id(record: &IdempotencyRecord) -> String {
    let hex = record.id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

async fn create_payment<LG: Ledger>(
    State(shared): State<Shared<LG>>,
    Extension(payment): Extension<PaymentRequest>,
    Extension(record): Extension<IdempotencyRecord>,
    deadline: Option<Extension<Deadline>>,
) -> Response {
    let deadline = deadline.map(|Extension(d)| d);
    let PaymentRequest {
        order_id,
        amount_cents,
        work_ms,
    } = payment;
    // The lock layer serialises this order; the mark proves it (an overlap must never happen).
    let token = uuid::Uuid::new_v4().simple().to_string();
    let outcome = async {
        // Cleared however the handler ends — a client hanging up drops this future, and an
        // `enter` that timed out may still land: the owner-checked clear follows it.
        let mut mark = Mark {
            ledger: shared.ledger.clone(),
            order: order_id.clone(),
            token: token.clone(),
        };
        let overlap = Deadline::bound(deadline, shared.ledger.enter(&order_id, &token)).await?;
        if overlap {
            // The mark is someone else's: leave it.
            mark.order.clear();
            tracing::error!(order = %order_id, "two handlers in one order's critical section");
        }
        if work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
        }
        // Keyed by the idempotency record: a re-run finds this charge instead of adding one.
        let append = shared.ledger.append(&order_id, record.id(), amount_cents);
        let seq = Deadline::bound(deadline, append).await;
        // Cleared before the answer (and so before the lock is released): the next payment
        // on this order must find no one inside.
        mark.leave(deadline).await;
        seq
    }
    .await;
    match outcome {
        Ok(charge_seq) => (
            StatusCode::CREATED,
            Json(Payment {
                payment_id: payment_id(&record),
                order_id,
                amount_cents,
                charge_seq,
            }),
        )
            .into_response(),
        Err(e) => problem::unavailable(&format!("the ledger is unavailable: {e}")),
    }
}

/// The critical-section mark of one handler: cleared when dropped.
struct Mark<LG: Ledger> {
    ledger: LG,
    order: String,
    token: String,
}

impl<LG: Ledger> Mark<LG> {
    /// Clears the mark now, within the request's deadline (else in the background on drop).
    async fn leave(mut self, deadline: Option<Deadline>) {
        if self.order.is_empty() {
            return;
        }
        let leave = self.ledger.leave(&self.order, &self.token);
        if Deadline::bound(deadline, leave).await.is_ok() {
            self.order.clear();
        }
    }
}

impl<LG: Ledger> Drop for Mark<LG> {
    fn drop(&mut self) {
        if self.order.is_empty() {
            return;
        }
        let (ledger, order, token) = (
            self.ledger.clone(),
            std::mem::take(&mut self.order),
            std::mem::take(&mut self.token),
        );
        tokio::spawn(async move {
            if let Err(e) = ledger.leave(&order, &token).await {
                tracing::warn!(%order, error = %e, "could not clear the critical-section mark; it expires with the lock");
            }
        });
    }
}

async fn charges<LG: Ledger>(
    State(shared): State<Shared<LG>>,
    Path(order_id): Path<String>,
) -> Response {
    match shared.ledger.charges(&order_id).await {
        Ok(c) => Json(serde_json::json!({
            "order_id": order_id,
            "count": c.count,
            "total_cents": c.total_cents,
            "overlaps": c.overlaps,
        }))
        .into_response(),
        Err(e) => problem::unavailable(&format!("the ledger is unavailable: {e}")),
    }
}

async fn ready<LG: Ledger>(State(shared): State<Shared<LG>>) -> Response {
    if shared.quotes.breaker.state() == BreakerState::Open {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "degraded", "reason": "circuit_open"})),
        )
            .into_response();
    }
    Json(serde_json::json!({"status": "ready"})).into_response()
}

async fn resilience<LG: Ledger>(State(shared): State<Shared<LG>>) -> Response {
    let breaker = shared.quotes.breaker.snapshot();
    let pool = shared.quotes.pool.snapshot();
    let limit = shared.quotes.pool.config().capacity();
    Json(serde_json::json!({
        "breakers": [{
            "name": breaker.name,
            "state": breaker.state.as_str(),
            "failure_rate": breaker.failure_rate,
            "time_until_recovery_ms": breaker.retry_after_ms,
        }],
        "bulkheads": [{
            "name": pool.name,
            "active": pool.tiers.iter().map(|t| t.active).sum::<u32>(),
            "queued": pool.tiers.iter().map(|t| t.queued).sum::<u32>(),
            "limit": limit,
        }],
        "rate_limits": [{
            "route": "POST /orders/{order_id}/payments",
            "key": "x-api-key",
            "policy": shared.rate_limit.header_value().to_str().unwrap_or_default(),
        }],
    }))
    .into_response()
}
