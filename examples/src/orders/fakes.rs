//! The checkout saga's fake downstreams — inventory, payments, shipping — served by the same
//! process over real HTTP, each counting its effects once per `Idempotency-Key` (as a real
//! downstream honouring the key would).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use palisade::outbox::Schema;
use palisade_examples::problem;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

/// The services and their actions (forward, then compensation).
pub const SERVICES: [(&str, &str, &str); 3] = [
    ("inventory", "reserve", "release"),
    ("payments", "charge", "refund"),
    ("shipping", "ship", "cancel"),
];

#[derive(Clone)]
pub struct Fakes {
    pool: PgPool,
    table: String,
}

impl Fakes {
    pub async fn open(pool: PgPool, schema: &Schema) -> Result<Fakes, sqlx::Error> {
        let table = schema.table("fake_effects");
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
                idempotency_key text PRIMARY KEY, \
                service text NOT NULL, \
                action text NOT NULL, \
                checkout_id text NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        Ok(Fakes { pool, table })
    }

    /// `POST /fake/{service}/{action}` and `GET /effects`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/fake/{service}/{action}", post(act))
            .route("/effects", get(effects))
            .with_state(Arc::new(self))
    }
}

/// Body: `{"checkout_id", "fail": bool, "delay_ms": n}`; header `Idempotency-Key`. Either
/// waits `delay_ms` and refuses (422, no effect), or records the effect once per key — a
/// compensation only when its action happened — then waits `delay_ms` and answers 200.
async fn act(
    State(fakes): State<Arc<Fakes>>,
    Path((service, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let known = SERVICES
        .iter()
        .any(|(s, a, c)| *s == service && (*a == action || *c == action));
    if !known {
        return (StatusCode::NOT_FOUND, "no such fake action").into_response();
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key required").into_response();
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let delay = Duration::from_millis(request["delay_ms"].as_u64().unwrap_or(0).min(60_000));
    if request["fail"].as_bool().unwrap_or(false) {
        // A definite refusal (a declined card, no stock): nothing happened.
        tokio::time::sleep(delay).await;
        return (StatusCode::UNPROCESSABLE_ENTITY, "refusing on purpose").into_response();
    }
    let checkout = request["checkout_id"].as_str().unwrap_or_default();
    // A compensation of an action that never happened (its outcome was unknown to the saga)
    // is a no-op, as with a real service: nothing to release, refund or cancel.
    if let Some((_, forward, _)) = SERVICES
        .iter()
        .find(|(s, _, c)| *s == service && *c == action)
    {
        let happened: Result<Option<i64>, _> = sqlx::query_scalar(&format!(
            "SELECT 1::bigint FROM {} WHERE service = $1 AND action = $2 AND checkout_id = $3",
            fakes.table
        ))
        .bind(&service)
        .bind(forward)
        .bind(checkout)
        .fetch_optional(&fakes.pool)
        .await;
        match happened {
            Ok(Some(_)) => {}
            Ok(None) => {
                tokio::time::sleep(delay).await;
                return Json(json!({"service": service, "action": action, "noop": true}))
                    .into_response();
            }
            Err(_) => return problem::unavailable("PostgreSQL did not answer."),
        }
    }
    let recorded = sqlx::query(&format!(
        "INSERT INTO {} (idempotency_key, service, action, checkout_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (idempotency_key) DO NOTHING",
        fakes.table
    ))
    .bind(&key)
    .bind(&service)
    .bind(&action)
    .bind(checkout)
    .execute(&fakes.pool)
    .await;
    // The effect is done; the answer takes `delay_ms` — a caller killed meanwhile never
    // hears of it, and its resumed saga asks again with the same key.
    tokio::time::sleep(delay).await;
    match recorded {
        Ok(done) => Json(json!({
            "service": service,
            "action": action,
            "repeated": done.rows_affected() == 0,
        }))
        .into_response(),
        Err(_) => problem::unavailable("PostgreSQL did not answer."),
    }
}

/// `{"inventory": {"<checkout>": {"reserve": 1, "release": 1}}, "payments": {…}, "shipping": {…}}`.
async fn effects(State(fakes): State<Arc<Fakes>>) -> Response {
    let rows = sqlx::query(&format!(
        "SELECT service, checkout_id, action, count(*) AS n FROM {} \
         GROUP BY service, checkout_id, action",
        fakes.table
    ))
    .fetch_all(&fakes.pool)
    .await;
    let Ok(rows) = rows else {
        return problem::unavailable("PostgreSQL did not answer.");
    };
    let mut all: BTreeMap<String, BTreeMap<String, BTreeMap<String, i64>>> = SERVICES
        .iter()
        .map(|(s, _, _)| (s.to_string(), BTreeMap::new()))
        .collect();
    for row in rows {
        let service: String = row.try_get("service").unwrap_or_default();
        let checkout: String = row.try_get("checkout_id").unwrap_or_default();
        let action: String = row.try_get("action").unwrap_or_default();
        let n: i64 = row.try_get("n").unwrap_or_default();
        all.entry(service)
            .or_default()
            .entry(checkout)
            .or_default()
            .insert(action, n);
    }
    Json(all).into_response()
}
