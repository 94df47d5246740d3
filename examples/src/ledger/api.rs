//! The HTTP API of the ledger.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use palisade::{
    ProblemDetails,
    eventstore::{CommandError, ProjectionRunner, Repository, StoreError},
};
use palisade_examples::{
    problem::{self, respond},
    serve::{ServeLimits, check_head, read_body_within},
    valid_id,
};
use serde_json::{Value, json};
use sqlx::Row;

use crate::account::{Account, AccountCommand, AccountError, AccountEvent};

pub struct App {
    pub accounts: Repository<Account>,
    pub projections: ProjectionRunner,
}

type Shared = Arc<App>;

pub fn router(app: App, limits: ServeLimits) -> Router {
    Router::new()
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/events", get(events))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/balances/{id}", get(balance))
        .route("/projections", get(projections))
        .route("/projections/{name}/rebuild", post(rebuild))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async {
            problem::not_found(
                "There is no such route; see the ledger contract in examples/README.md.",
            )
        })
        .method_not_allowed_fallback(|| async { problem::method_not_allowed() })
        .with_state(Arc::new(app))
        .layer(middleware::from_fn(move |request, next| {
            read_body_within(limits, request, next)
        }))
        .layer(middleware::from_fn(check_head))
}

fn unprocessable(detail: &str) -> Response {
    problem::unprocessable(
        "https://palisade.rs/problems/invalid-amount",
        "Invalid amount",
        detail,
    )
}

fn no_such_account(id: &str) -> Response {
    respond(
        ProblemDetails::new(StatusCode::NOT_FOUND)
            .with_type(
                "https://palisade.rs/problems/account-not-found",
                "Account not found",
            )
            .with_detail("There is no account with this id (ids: 1-128 of A-Z a-z 0-9 - _ . :).")
            .with_member("account_id", id),
    )
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(%error, "ledger: store failed");
    problem::unavailable("PostgreSQL did not complete the request.")
}

/// The account id of the path, or (as `Err`) what to name in the 404.
fn account_id(id: Result<Path<String>, PathRejection>) -> Result<String, String> {
    match id {
        Ok(Path(id)) if valid_id(&id) => Ok(id),
        Ok(Path(id)) => Err(id),
        Err(_) => Err(String::new()),
    }
}

/// `{"amount_cents": N, "expected_version"?: V}`.
fn parse_change(body: &[u8]) -> Result<(i64, Option<u64>), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".to_owned());
    };
    let amount = match fields.get("amount_cents") {
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .ok_or("amount_cents is required and must be an integer")?;
    let expected = match fields.get("expected_version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or("expected_version must be a non-negative integer")?,
        ),
        Some(_) => return Err("expected_version must be a non-negative integer".to_owned()),
    };
    Ok((amount, expected))
}

async fn change(
    app: &App,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: &[u8],
    command: fn(i64) -> AccountCommand,
) -> Response {
    let id = match account_id(id) {
        Ok(id) => id,
        Err(id) => return no_such_account(&id),
    };
    let (amount, expected) = match parse_change(body) {
        Ok(change) => change,
        Err(why) => return unprocessable(&why),
    };
    // With an `Idempotency-Key`, a retried request changes nothing and gets the first answer.
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if (1..=255).contains(&key.len()) => Some(key.to_owned()),
        Some(_) => {
            return unprocessable("Idempotency-Key must be 1 to 255 visible ASCII characters");
        }
    };
    let executed = match &key {
        Some(key) => {
            app.accounts
                .execute_once(&id, key, command(amount), expected)
                .await
        }
        None => app.accounts.execute(&id, command(amount), expected).await,
    };
    match executed {
        Ok(done) => Json(json!({
            "version": done.version,
            "balance_cents": done.state.balance_cents,
        }))
        .into_response(),
        Err(CommandError::Rejected(AccountError::InsufficientFunds {
            balance_cents,
            requested_cents,
        })) => respond(
            ProblemDetails::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type(
                    "https://palisade.rs/problems/insufficient-funds",
                    "Insufficient funds",
                )
                .with_detail("The withdrawal is larger than the balance.")
                .with_member("balance_cents", balance_cents)
                .with_member("requested_cents", requested_cents),
        ),
        Err(CommandError::Rejected(error)) => unprocessable(&error.to_string()),
        Err(CommandError::Conflict { expected, actual }) => respond(
            ProblemDetails::new(StatusCode::CONFLICT)
                .with_type(
                    "https://palisade.rs/problems/version-conflict",
                    "Version conflict",
                )
                .with_detail("The account is not at the expected version; reload and decide again.")
                .with_member("expected", expected)
                .with_member("actual", actual),
        ),
        Err(CommandError::Contended { attempts }) => {
            let mut response = respond(
                ProblemDetails::new(StatusCode::SERVICE_UNAVAILABLE)
                    .with_type(
                        "https://palisade.rs/problems/contended",
                        "Too much contention",
                    )
                    .with_detail("Concurrent changes kept winning; try again.")
                    .with_member("attempts", attempts),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Err(CommandError::Store(error)) => unavailable(&error),
    }
}

async fn deposit(
    State(app): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(&app, id, &headers, &body, AccountCommand::Deposit).await
}

async fn withdraw(
    State(app): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(&app, id, &headers, &body, AccountCommand::Withdraw).await
}

async fn account(State(app): State<Shared>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match account_id(id) {
        Ok(id) => id,
        Err(id) => return no_such_account(&id),
    };
    match app.accounts.load(&id).await {
        Ok(loaded) => Json(json!({
            "account_id": id,
            "balance_cents": loaded.state.balance_cents,
            "version": loaded.version,
        }))
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn events(State(app): State<Shared>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match account_id(id) {
        Ok(id) => id,
        Err(id) => return no_such_account(&id),
    };
    let recorded = match app.accounts.store().read_stream(&id, 0).await {
        Ok(recorded) => recorded,
        Err(error) => return unavailable(&error),
    };
    let mut out = Vec::with_capacity(recorded.len());
    for event in &recorded {
        let decoded: Result<AccountEvent, StoreError> = app.accounts.decode(event);
        let amount = decoded.as_ref().map(AccountEvent::amount_cents).ok();
        out.push(json!({
            "version": event.version,
            "event_type": event.event_type,
            "amount_cents": amount,
            "position": event.position.global_position,
            "recorded_at": event.recorded_at,
        }));
    }
    Json(Value::Array(out)).into_response()
}

async fn balance(State(app): State<Shared>, id: Result<Path<String>, PathRejection>) -> Response {
    let id = match account_id(id) {
        Ok(id) => id,
        Err(id) => return no_such_account(&id),
    };
    let table = app.accounts.store().schema().table("balances");
    let row = sqlx::query(&format!(
        "SELECT balance_cents, position FROM {table} WHERE account_id = $1"
    ))
    .bind(&id)
    .fetch_optional(app.accounts.store().pool())
    .await;
    match row {
        Ok(Some(row)) => {
            let balance: i64 = row.try_get("balance_cents").unwrap_or_default();
            let position: i64 = row.try_get("position").unwrap_or_default();
            Json(json!({"account_id": id, "balance_cents": balance, "position": position}))
                .into_response()
        }
        Ok(None) => respond(
            ProblemDetails::new(StatusCode::NOT_FOUND)
                .with_type(
                    "https://palisade.rs/problems/not-projected",
                    "Not in the projection",
                )
                .with_detail("The balances projection has no event of this account yet.")
                .with_member("account_id", id),
        ),
        Err(error) => unavailable(&error),
    }
}

async fn projections(State(app): State<Shared>) -> Response {
    match app.projections.status().await {
        Ok(all) => Json(json!({
            "projections": all.iter().map(|p| json!({
                "name": p.name,
                "position": p.checkpoint.global_position,
                "transaction_id": p.checkpoint.transaction_id,
                "lag": p.lag,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn rebuild(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    if name != "balances" {
        return problem::not_found("There is no projection with this name.");
    }
    match app.projections.rebuild(&name).await {
        Err(StoreError::Invalid(why)) => respond(
            ProblemDetails::new(StatusCode::CONFLICT)
                .with_type(
                    "https://palisade.rs/problems/rebuild-running",
                    "Rebuild running",
                )
                .with_detail(&why),
        ),
        Ok(at) => Json(json!({
            "name": name,
            "position": at.global_position,
            "transaction_id": at.transaction_id,
        }))
        .into_response(),
        Err(error) => unavailable(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_or_say_why_not() {
        assert_eq!(parse_change(br#"{"amount_cents": 5}"#).unwrap(), (5, None));
        assert_eq!(
            parse_change(br#"{"amount_cents": -5, "expected_version": 3}"#).unwrap(),
            (-5, Some(3))
        );
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"amount_cents": "5"}"#,
            br#"{"amount_cents": 1.5}"#,
            br#"{"amount_cents": 5, "expected_version": -1}"#,
            br#"{"amount_cents": 5, "expected_version": "3"}"#,
        ] {
            assert!(
                parse_change(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
