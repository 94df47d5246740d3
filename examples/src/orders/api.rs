//! The HTTP API: orders written with their events in one transaction, the outbox's lag, the
//! projector's read model.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use palisade::{
    ProblemDetails,
    outbox::{OutboxError, OutboxStats},
};
use palisade_examples::{
    problem::{self, respond},
    serve::{ServeLimits, check_head, read_body_within},
    valid_id,
};
use serde_json::{Value, json};

use crate::store::{Order, Store, Written};

/// The longest order or customer id, in bytes (`palisade_examples::valid_id`).
const MAX_ID: usize = 128;

/// The largest `amount_cents` (ten billion in the currency's unit): sums over a customer's
/// orders then stay far inside a `bigint`.
const MAX_AMOUNT: i64 = 1_000_000_000_000;

type Shared = Arc<Store>;

/// The orders routes, with `extra` routes (the checkout saga's) merged in, behind the same
/// head and body limits.
pub fn router(store: Store, limits: ServeLimits, extra: Router) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/pay", post(pay))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/outbox", get(outbox))
        .route("/customers/{id}", get(customer))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(Arc::new(store))
        .merge(extra)
        .fallback(|| async {
            problem::not_found(
                "There is no such route; see the orders contract in examples/README.md.",
            )
        })
        .method_not_allowed_fallback(|| async { problem::method_not_allowed() })
        .layer(middleware::from_fn(move |request, next| {
            read_body_within(limits, request, next)
        }))
        .layer(middleware::from_fn(check_head))
}

fn unprocessable(detail: &str) -> Response {
    problem::unprocessable(
        "https://palisade.rs/problems/invalid-order",
        "Invalid order",
        detail,
    )
}

fn conflict(order_id: &str, detail: &str, status: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::CONFLICT)
            .with_type(
                "https://palisade.rs/problems/order-conflict",
                "Order conflict",
            )
            .with_detail(detail)
            .with_member("order_id", order_id)
            .with_member("order_status", status),
    )
}

fn no_such_order(order_id: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::NOT_FOUND)
            .with_type(
                "https://palisade.rs/problems/order-not-found",
                "Order not found",
            )
            .with_detail("There is no order with this id.")
            .with_member("order_id", order_id),
    )
}

fn failed_on_purpose() -> Response {
    respond(
        ProblemDetails::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_type(
                "https://palisade.rs/problems/failed-on-purpose",
                "Failed on purpose",
            )
            .with_detail(
                "?fail=after_write: the order and its event were written, then the transaction \
                 was rolled back; nothing was committed or will be published.",
            ),
    )
}

fn database_unavailable(error: &OutboxError) -> Response {
    tracing::warn!(%error, "orders: database call failed");
    problem::unavailable(
        "PostgreSQL did not complete the request; nothing was committed unless the order shows it.",
    )
}

/// `?fail=after_write` → true; no `fail` → false; anything else → 422.
fn fail_mode(query: Option<&str>) -> Result<bool, String> {
    let mut fail = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "fail" {
            if value != "after_write" {
                return Err("fail must be after_write".to_owned());
            }
            fail = true;
        }
    }
    Ok(fail)
}

fn traceparent(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    // version-traceid-parentid-flags, W3C Trace Context.
    (value.len() == 55 && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then_some(value)
}

/// The order in a `POST /orders` body, or why it is not one.
fn parse_order(body: &[u8]) -> Result<Order, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".to_owned());
    };
    let id = |name: &str| -> Result<String, String> {
        match fields.get(name) {
            Some(Value::String(id)) if valid_id(id) => Ok(id.clone()),
            Some(Value::String(_)) => Err(format!(
                "{name} must be 1 to {MAX_ID} characters of letters, digits, '-', '_', '.' and ':'"
            )),
            _ => Err(format!("{name} is required and must be a string")),
        }
    };
    let order_id = id("order_id")?;
    let customer_id = id("customer_id")?;
    let amount_cents = match fields.get("amount_cents") {
        Some(Value::Number(n)) => n.as_i64().filter(|n| (1..=MAX_AMOUNT).contains(n)),
        _ => None,
    }
    .ok_or("amount_cents is required and must be an integer from 1 to 1000000000000")?;
    Ok(Order {
        order_id,
        customer_id,
        status: "placed".into(),
        amount_cents,
    })
}

async fn place(
    State(store): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fail = match fail_mode(query.as_deref()) {
        Ok(fail) => fail,
        Err(why) => return unprocessable(&why),
    };
    let order = match parse_order(&body) {
        Ok(order) => order,
        Err(why) => return unprocessable(&why),
    };
    match store.place(&order, fail, traceparent(&headers)).await {
        Ok(Written::Done { event_id, .. }) => (
            StatusCode::CREATED,
            Json(json!({"order_id": order.order_id, "event_id": event_id})),
        )
            .into_response(),
        Ok(Written::Conflict { .. }) => {
            conflict(&order.order_id, "An order with this id exists.", "exists")
        }
        Ok(Written::FailedOnPurpose) => failed_on_purpose(),
        Ok(Written::NotFound) => no_such_order(&order.order_id),
        Err(error) => database_unavailable(&error),
    }
}

async fn transition(
    store: &Store,
    id: Result<Path<String>, PathRejection>,
    query: Option<&str>,
    headers: &HeaderMap,
    to: &str,
    event_type: &str,
) -> Response {
    let fail = match fail_mode(query) {
        Ok(fail) => fail,
        Err(why) => return unprocessable(&why),
    };
    let Ok(Path(id)) = id else {
        return no_such_order("");
    };
    if !valid_id(&id) {
        return no_such_order(&id);
    }
    match store
        .transition(&id, to, event_type, fail, traceparent(headers))
        .await
    {
        // Answered from the transaction's own RETURNING: a read after the commit could fail
        // and turn a committed change into a 503.
        Ok(Written::Done {
            event_id,
            order: Some(order),
        }) => Json(json!({
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "status": order.status,
            "amount_cents": order.amount_cents,
            "event_id": event_id,
        }))
        .into_response(),
        Ok(Written::Done { order: None, .. }) => no_such_order(&id),
        Ok(Written::NotFound) => no_such_order(&id),
        Ok(Written::Conflict { status }) => conflict(
            &id,
            &format!("Only a placed order can become {to}; this one is {status}."),
            &status,
        ),
        Ok(Written::FailedOnPurpose) => failed_on_purpose(),
        Err(error) => database_unavailable(&error),
    }
}

async fn pay(
    State(store): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    transition(&store, id, query.as_deref(), &headers, "paid", "order.paid").await
}

async fn cancel(
    State(store): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    transition(
        &store,
        id,
        query.as_deref(),
        &headers,
        "cancelled",
        "order.cancelled",
    )
    .await
}

async fn order(State(store): State<Shared>, id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(id)) = id else {
        return no_such_order("");
    };
    if !valid_id(&id) {
        return no_such_order(&id);
    }
    match store.order(&id).await {
        Ok(Some(order)) => Json(order).into_response(),
        Ok(None) => no_such_order(&id),
        Err(error) => database_unavailable(&error),
    }
}

async fn outbox(State(store): State<Shared>) -> Response {
    match OutboxStats::read(store.pool(), store.schema()).await {
        Ok(stats) => Json(json!({
            "pending": stats.pending,
            "published": stats.published,
            "dead_letters": stats.dead_letters,
            "oldest_pending_age_ms": stats.oldest_pending_age.as_millis() as u64,
        }))
        .into_response(),
        Err(error) => database_unavailable(&error),
    }
}

async fn customer(
    State(store): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return problem::not_found("There is no customer with this id.");
    };
    if !valid_id(&id) {
        return problem::not_found("There is no customer with this id.");
    }
    match store.customer(&id).await {
        Ok(customer) => Json(customer).into_response(),
        Err(error) => database_unavailable(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain() {
        assert!(valid_id("o-1"));
        assert!(valid_id("order:2026.12_01"));
        for bad in [
            "",
            "a b",
            "a/b",
            "../x",
            "é",
            "a%2Fb",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn orders_parse_or_say_why_not() {
        let ok = parse_order(br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":500}"#);
        assert_eq!(ok.unwrap().amount_cents, 500);
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"customer_id":"c-1","amount_cents":500}"#,
            br#"{"order_id":"o 1","customer_id":"c-1","amount_cents":500}"#,
            br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":0}"#,
            br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":1.5}"#,
            br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":"5"}"#,
            br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":99999999999999999999}"#,
            br#"{"order_id":"o-1","customer_id":"c-1","amount_cents":1000000000001}"#,
            b"\xff\xfe",
        ] {
            assert!(
                parse_order(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn fail_modes() {
        assert!(!fail_mode(None).unwrap());
        assert!(fail_mode(Some("fail=after_write")).unwrap());
        assert!(fail_mode(Some("x=1&fail=after_write")).unwrap());
        assert!(fail_mode(Some("fail=before")).is_err());
    }
}
