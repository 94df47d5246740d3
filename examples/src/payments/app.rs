//! The routes and the layer stack of each.

use std::{collections::HashMap, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use http::{HeaderMap, StatusCode, header};
use palisade::{
    breaker::State as BreakerState,
    idempotency::{IdempotencyLayer, IdempotencyStore},
    key::Header,
    lock::{LockLayer, Locker, PathSegment},
    ratelimit::{Policy, RateLimitLayer, RateLimitStore},
};
use serde::Serialize;
use tower::ServiceBuilder;

use crate::{
    config::Settings,
    ledger::Ledger,
    problem,
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
    // Outermost first: who you are → how often → have we done this already → one at a time
    // per order → the handler.
    let payment_stack = ServiceBuilder::new()
        .layer(middleware::from_fn(require_api_key))
        .layer(
            RateLimitLayer::builder(backends.rate_limits, route.rate_limit.clone())
                .key(Header::new("x-api-key"))
                .build(),
        )
        .layer(
            IdempotencyLayer::new(backends.idempotency)
                .scope(Header::new("x-api-key"))
                .require_key()
                .namespace("payments")
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
}

async fn require_api_key(request: Request, next: Next) -> Response {
    match request.headers().get("x-api-key") {
        Some(key) if !key.is_empty() && key.len() <= 256 => next.run(request).await,
        _ => problem::unauthorized(),
    }
}

#[derive(Serialize)]
struct Payment {
    payment_id: String,
    order_id: String,
    amount_cents: u64,
    charge_seq: u64,
}

fn valid_order_id(order_id: &str) -> bool {
    !order_id.is_empty()
        && order_id.len() <= 128
        && order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

async fn create_payment<LG: Ledger>(
    State(shared): State<Shared<LG>>,
    Path(order_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !valid_order_id(&order_id) {
        return problem::invalid(
            StatusCode::BAD_REQUEST,
            "order_id must be 1–128 of [A-Za-z0-9-_.:]",
        );
    }
    let json_type = headers
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
    let (Some(amount), Some(_currency)) = (amount, currency) else {
        return problem::invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_cents must be an integer > 0 and currency three letters",
        );
    };
    let work_ms = match query.get("work_ms").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(ms)) if ms <= 5000 => ms,
        Some(_) => {
            return problem::invalid(StatusCode::UNPROCESSABLE_ENTITY, "work_ms must be 0–5000");
        }
    };

    // The lock layer serialises this order; the mark proves it (an overlap must never happen).
    let token = uuid::Uuid::new_v4().simple().to_string();
    let outcome = async {
        let overlap = shared.ledger.enter(&order_id, &token).await?;
        if overlap {
            tracing::error!(order = %order_id, "two handlers in one order's critical section");
        }
        if work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
        }
        let seq = shared.ledger.append(&order_id, amount).await;
        if !overlap {
            shared.ledger.leave(&order_id, &token).await?;
        }
        seq
    }
    .await;
    match outcome {
        Ok(charge_seq) => (
            StatusCode::CREATED,
            Json(Payment {
                payment_id: uuid::Uuid::new_v4().to_string(),
                order_id,
                amount_cents: amount,
                charge_seq,
            }),
        )
            .into_response(),
        Err(e) => problem::unavailable(&format!("the ledger is unavailable: {e}")),
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
