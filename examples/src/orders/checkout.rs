//! The checkout saga: reserve inventory → charge payment → ship order, compensated by
//! release → refund → cancel; each step a tower service calling a fake downstream over HTTP
//! with the step's idempotency key.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes as RawBytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade::{
    ProblemDetails,
    saga::{
        SagaDefinition, SagaError, SagaRunner, SagaStatus, Step, StepCall, StepStatus, step_service,
    },
};
use palisade_examples::{
    problem::{self, respond},
    valid_id,
};
use serde_json::{Value, json};

use crate::fakes::SERVICES;

/// The saga definition's name.
pub const CHECKOUT: &str = "checkout";

/// The steps, in order, with the fake service each calls.
const STEPS: [(&str, usize); 3] = [("reserve", 0), ("charge", 1), ("ship", 2)];

/// The checkout definition, its steps calling the fakes at `base` (this process).
pub fn definition(base: &str) -> SagaDefinition {
    let client: Client<HttpConnector, Full<RawBytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let call = |service: &'static str,
                action: &'static str,
                step: &'static str,
                compensating: bool| {
        let (client, url) = (client.clone(), format!("{base}/fake/{service}/{action}"));
        step_service(tower::service_fn(move |call: StepCall| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let fail = !compensating && call.input["fail_at"] == step;
                let body = json!({
                    "checkout_id": call.saga_id,
                    "fail": fail,
                    "delay_ms": call.input["step_delay_ms"].as_u64().unwrap_or(0),
                });
                let request = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", &call.idempotency_key)
                    .body(Full::new(RawBytes::from(body.to_string())))?;
                let response = client.request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                if status.is_client_error() {
                    // The downstream refused: it did not happen (not compensated).
                    return Err(palisade::saga::StepRefused(format!(
                        "{service} {action}: {status}"
                    ))
                    .into());
                }
                if !status.is_success() {
                    return Err(format!("{service} {action}: {status}").into());
                }
                Ok::<Value, tower::BoxError>(serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
        }))
    };
    let steps = STEPS
        .iter()
        .map(|(step, service)| {
            let (name, forward, backward) = SERVICES[*service];
            Step::new(
                *step,
                call(name, forward, step, false),
                call(name, backward, step, true),
            )
            .attempts(2)
            .timeout(Duration::from_secs(70))
        })
        .collect();
    SagaDefinition::new(CHECKOUT, steps)
        .expect("three distinct steps")
        .compensation_attempts(10)
}

type Shared = Arc<SagaRunner>;

pub fn router(runner: SagaRunner) -> Router {
    Router::new()
        .route("/checkouts", post(start))
        .route("/checkouts/{id}", get(status))
        .with_state(Arc::new(runner))
}

fn unprocessable(detail: &str) -> Response {
    problem::unprocessable(
        "https://palisade.rs/problems/invalid-checkout",
        "Invalid checkout",
        detail,
    )
}

/// `{"checkout_id", "order_id", "fail_at", "step_delay_ms"}` → (checkout id, saga input).
fn parse(body: &[u8]) -> Result<(String, Value), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".into());
    };
    let id = |name: &str| match fields.get(name) {
        Some(Value::String(id)) if valid_id(id) => Ok(id.clone()),
        _ => Err(format!(
            "{name} is required: 1 to 128 of letters, digits, '-', '_', '.' and ':'"
        )),
    };
    let checkout_id = id("checkout_id")?;
    let order_id = id("order_id")?;
    let fail_at = match fields.get("fail_at") {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(s)) if ["none", "reserve", "charge", "ship"].contains(&s.as_str()) => {
            s.clone()
        }
        _ => return Err("fail_at must be none, reserve, charge or ship".into()),
    };
    let delay = match fields.get("step_delay_ms") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= 60_000)
            .ok_or("step_delay_ms must be an integer from 0 to 60000")?,
        _ => return Err("step_delay_ms must be an integer from 0 to 60000".into()),
    };
    Ok((
        checkout_id,
        json!({"order_id": order_id, "fail_at": fail_at, "step_delay_ms": delay}),
    ))
}

async fn start(State(runner): State<Shared>, body: Bytes) -> Response {
    let (id, input) = match parse(&body) {
        Ok(parsed) => parsed,
        Err(why) => return unprocessable(&why),
    };
    match runner.start(&id, CHECKOUT, input).await {
        Ok(()) => {
            // Driven here at once; if this process dies, another instance's runner resumes it.
            let (driver, saga) = (runner.clone(), id.clone());
            tokio::spawn(async move {
                if let Err(error) = driver.drive(&saga).await {
                    tracing::warn!(checkout = %saga, %error, "checkout not driven to the end here");
                }
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({"checkout_id": id, "state": "running"})),
            )
                .into_response()
        }
        Err(SagaError::Exists(_)) => respond(
            ProblemDetails::new(StatusCode::CONFLICT)
                .with_type(
                    "https://palisade.rs/problems/checkout-exists",
                    "Checkout exists",
                )
                .with_detail("A checkout with this id exists.")
                .with_member("checkout_id", id),
        ),
        Err(error) => {
            tracing::warn!(%error, "checkout: cannot start");
            problem::unavailable("PostgreSQL did not complete the request.")
        }
    }
}

fn state_name(status: SagaStatus) -> &'static str {
    match status {
        SagaStatus::Running | SagaStatus::Compensating => "running",
        SagaStatus::Completed => "completed",
        SagaStatus::Compensated => "compensated",
        SagaStatus::Failed => "failed",
    }
}

fn step_name(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Done => "done",
        StepStatus::Failed | StepStatus::Uncertain => "failed",
        StepStatus::Compensating => "compensating",
        StepStatus::Compensated => "compensated",
        StepStatus::CompensationFailed => "compensation_failed",
    }
}

async fn status(State(runner): State<Shared>, id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(id)) = id else {
        return problem::not_found("There is no checkout with this id.");
    };
    match runner.get(&id).await {
        Ok(Some(record)) => Json(json!({
            "checkout_id": id,
            "state": state_name(record.state.status),
            "steps": record.state.steps.iter().map(|s| json!({
                "name": s.name,
                "status": step_name(s.status),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(None) => problem::not_found("There is no checkout with this id."),
        Err(error) => {
            tracing::warn!(%error, "checkout: cannot read");
            problem::unavailable("PostgreSQL did not complete the request.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkouts_parse_or_say_why_not() {
        let (id, input) =
            parse(br#"{"checkout_id": "co-1", "order_id": "o-1", "fail_at": "charge", "step_delay_ms": 5}"#)
                .unwrap();
        assert_eq!(id, "co-1");
        assert_eq!(input["fail_at"], "charge");
        assert_eq!(input["step_delay_ms"], 5);
        assert_eq!(
            parse(br#"{"checkout_id": "c", "order_id": "o"}"#)
                .unwrap()
                .1["fail_at"],
            "none"
        );
        for bad in [
            &br#"{"order_id": "o"}"#[..],
            br#"{"checkout_id": "c", "order_id": "o", "fail_at": "pay"}"#,
            br#"{"checkout_id": "c", "order_id": "o", "step_delay_ms": -1}"#,
            br#"{"checkout_id": "c", "order_id": "o", "step_delay_ms": 60001}"#,
            b"nope",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
