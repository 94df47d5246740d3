//! The layer over axum: the IETF draft's statuses, one execution per key, replays, failures
//! that release the key, leases, scoping — on the in-memory store under paused time.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::State,
    response::IntoResponse,
    routing::post,
};
use http::{Request, Response, StatusCode};
use palisade_core::{
    OnBackendError,
    key::{Header, KeyExtractor, RequestHead},
};
use palisade_idempotency::{
    Fingerprint, IdempotencyLayer, IdempotencyRecord, IdempotencyStore, MemoryStore, NotApplied,
    UnknownOutcome,
    store::{Claim, Owner, RecordKey},
};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn pay(State(calls): State<Calls>, body: String) -> impl IntoResponse {
    let n = calls.0.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(20)).await;
    (
        StatusCode::CREATED,
        [("content-type", "application/json"), ("set-cookie", "s=1")],
        format!(r#"{{"payment":{n},"echo":{body:?}}}"#),
    )
}

async fn slow(State(calls): State<Calls>) -> impl IntoResponse {
    calls.0.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    (StatusCode::CREATED, "slow done")
}

async fn flaky(State(calls): State<Calls>) -> Response<Body> {
    let n = calls.0.fetch_add(1, Ordering::SeqCst);
    match n {
        0 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        1 => (StatusCode::BAD_REQUEST, "fix it").into_response(),
        2 => panic!("handler panicked"),
        _ => (StatusCode::OK, format!("ok after {n}")).into_response(),
    }
}

async fn big(State(calls): State<Calls>) -> impl IntoResponse {
    calls.0.fetch_add(1, Ordering::SeqCst);
    vec![b'x'; 4096]
}

fn app<S: IdempotencyStore>(store: S, calls: Calls) -> Router {
    app_with(IdempotencyLayer::new(store), calls)
}

fn app_with<S: IdempotencyStore>(layer: IdempotencyLayer<S>, calls: Calls) -> Router {
    let layer = layer
        .scope(Header::new("x-api-key"))
        .require_key()
        .max_response_body(1024);
    Router::new()
        .route("/pay", post(pay))
        .route("/slow", post(slow))
        .route("/flaky", post(flaky))
        .route("/big", post(big))
        .route_layer(layer)
        .with_state(calls)
}

/// A layer that releases the key on an unknown outcome (not the default).
fn releasing() -> IdempotencyLayer<MemoryStore> {
    IdempotencyLayer::new(MemoryStore::new()).on_unknown_outcome(UnknownOutcome::Release)
}

fn request(path: &str, api_key: &str, idem: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post(path).header("x-api-key", api_key);
    if let Some(idem) = idem {
        builder = builder.header("idempotency-key", idem);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn assert_problem(headers: &http::HeaderMap, body: &str, status: u16) {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], status);
    assert!(json["type"].is_string());
    assert!(json["title"].is_string() && json["detail"].is_string());
}

#[tokio::test(start_paused = true)]
async fn executes_once_and_replays_byte_identical() {
    let calls = Calls::default();
    let app = app(MemoryStore::new(), calls.clone());
    let (s1, h1, b1) = send(&app, request("/pay", "k1", Some("\"abc\""), "{\"a\":1}")).await;
    assert_eq!(s1, StatusCode::CREATED);
    assert!(h1.get("idempotent-replayed").is_none());
    for _ in 0..3 {
        // Bare token and sf-string name the same key.
        let (s, h, b) = send(&app, request("/pay", "k1", Some("abc"), "{\"a\":1}")).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h["idempotent-replayed"], "true");
        assert_eq!(h["content-type"], "application/json");
        assert!(h.get("set-cookie").is_none(), "Set-Cookie is not replayed");
        assert_eq!(b, b1);
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn key_errors_are_400_and_reuse_is_422() {
    let calls = Calls::default();
    let app = app(MemoryStore::new(), calls.clone());
    let (s, h, b) = send(&app, request("/pay", "k1", None, "{}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_problem(&h, &b, 400);
    let long = "x".repeat(256);
    for bad in ["\"\"", long.as_str(), "\"a b\"", "\"open", "a\tb"] {
        let (s, h, b) = send(&app, request("/pay", "k1", Some(bad), "{}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_problem(&h, &b, 400);
    }
    assert_eq!(
        send(&app, request("/pay", "k1", Some("k"), "{\"a\":1}"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (s, h, b) = send(&app, request("/pay", "k1", Some("k"), "{\"a\":2}")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&h, &b, 422);
    // Missing caller scope: 400 too.
    let no_api_key = Request::post("/pay")
        .header("idempotency-key", "k")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, no_api_key).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_duplicates_run_once_and_see_409_or_the_replay() {
    let calls = Calls::default();
    let app = app(MemoryStore::new(), calls.clone());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, request("/pay", "k1", Some("same"), "{}")).await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_problem(&headers, &body, 409);
                assert_eq!(headers["retry-after"], "1");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(created + conflicts, 100);
    assert!(created >= 1);
    // After it finished, every retry is the replay.
    let (s, h, _) = send(&app, request("/pay", "k1", Some("same"), "{}")).await;
    assert_eq!(
        (s, &h["idempotent-replayed"]),
        (StatusCode::CREATED, &"true".parse().unwrap())
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_duplicates_get_the_replay() {
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(MemoryStore::new()).wait_for_in_flight(Duration::from_secs(30)),
        calls.clone(),
    );
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request("/slow", "k1", Some("w"), "")).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, h, b) = send(&app, request("/slow", "k1", Some("w"), "")).await;
    assert_eq!((s, b.as_str()), (StatusCode::CREATED, "slow done"));
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(first.await.unwrap().0, StatusCode::CREATED);
    assert_eq!(calls.get(), 1);
}

/// With `UnknownOutcome::Release` (the behaviour before it became an option): errors and
/// panics release the key at once and a retry runs.
#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_not_stored_and_a_retry_runs() {
    let calls = Calls::default();
    let app = app_with(releasing(), calls.clone());
    let flaky = || request("/flaky", "k1", Some("f"), "");
    assert_eq!(
        send(&app, flaky()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(send(&app, flaky()).await.0, StatusCode::BAD_REQUEST);
    let panicked = tokio::spawn({
        let app = app.clone();
        async move { app.oneshot(flaky()).await }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    // The panicked request's claim is released by a spawned task: let it run.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let (s, _, b) = send(&app, flaky()).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "ok after 3"));
    let (s, h, b) = send(&app, flaky()).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "ok after 3"));
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(calls.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn client_errors_can_be_stored() {
    let calls = Calls::default();
    let app = app_with(releasing().store_client_errors(true), calls.clone());
    let flaky = || request("/flaky", "k1", Some("f"), "");
    assert_eq!(
        send(&app, flaky()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(send(&app, flaky()).await.0, StatusCode::BAD_REQUEST);
    let (s, h, _) = send(&app, flaky()).await;
    assert_eq!(
        (s, &h["idempotent-replayed"]),
        (StatusCode::BAD_REQUEST, &"true".parse().unwrap())
    );
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropped_request_releases_its_claim_when_asked() {
    let calls = Calls::default();
    let app = app_with(releasing(), calls.clone());
    // A client timeout drops the request future mid-handler.
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        send(&app, request("/slow", "k1", Some("d"), "")),
    )
    .await;
    assert!(dropped.is_err());
    tokio::time::sleep(Duration::from_millis(1)).await;
    let retry = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request("/slow", "k1", Some("d"), "")).await }
    });
    assert_eq!(retry.await.unwrap().0, StatusCode::CREATED);
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn crashed_holders_claim_expires_with_its_lease() {
    let store = MemoryStore::new();
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(store.clone()).lease(Duration::from_secs(5)),
        calls.clone(),
    );
    // An instance claims the key and dies: it neither completes nor releases.
    let (parts, _) = request("/pay", "k1", None, "{}").into_parts();
    let layer_fingerprint = Fingerprint::default().compute(&parts, b"{}");
    let caller = Header::new("x-api-key")
        .extract(&RequestHead::from(&parts))
        .unwrap();
    let record = RecordKey::new("default", &caller, "/pay", "crash");
    let claim = store
        .claim(
            &record,
            &layer_fingerprint,
            &Owner::unique(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(claim, Claim::Acquired);
    assert_eq!(
        send(&app, request("/pay", "k1", Some("crash"), "{}"))
            .await
            .0,
        StatusCode::CONFLICT
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        send(&app, request("/pay", "k1", Some("crash"), "{}"))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn long_handlers_renew_their_lease() {
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(MemoryStore::new()).lease(Duration::from_secs(3)),
        calls.clone(),
    );
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request("/slow", "k1", Some("long"), "")).await }
    });
    // 10 s handler, 3 s lease: at 4 s and 8 s the claim must still be held.
    for at in [4, 4] {
        tokio::time::sleep(Duration::from_secs(at)).await;
        let (s, _, _) = send(&app, request("/slow", "k1", Some("long"), "")).await;
        assert_eq!(s, StatusCode::CONFLICT);
    }
    assert_eq!(first.await.unwrap().0, StatusCode::CREATED);
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn callers_are_isolated() {
    let calls = Calls::default();
    let app = app(MemoryStore::new(), calls.clone());
    let (_, _, mine) = send(&app, request("/pay", "alice", Some("k"), "{}")).await;
    let (s, h, theirs) = send(&app, request("/pay", "mallory", Some("k"), "{}")).await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(h.get("idempotent-replayed").is_none());
    assert_ne!(mine, theirs);
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn stored_responses_expire_after_retention() {
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(MemoryStore::new()).retention(Duration::from_secs(24 * 3600)),
        calls.clone(),
    );
    send(&app, request("/pay", "k1", Some("r"), "{}")).await;
    tokio::time::sleep(Duration::from_secs(23 * 3600)).await;
    let (_, h, _) = send(&app, request("/pay", "k1", Some("r"), "{}")).await;
    assert_eq!(h["idempotent-replayed"], "true");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let (_, h, _) = send(&app, request("/pay", "k1", Some("r"), "{}")).await;
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn oversized_bodies() {
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(MemoryStore::new()).max_request_body(16),
        calls.clone(),
    );
    let (s, h, b) = send(&app, request("/pay", "k1", Some("b"), &"y".repeat(17))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_problem(&h, &b, 413);
    // A response over the storage cap is delivered whole; the retry is refused, never re-run.
    let (s, _, b) = send(&app, request("/big", "k1", Some("big"), "")).await;
    assert_eq!((s, b.len()), (StatusCode::OK, 4096));
    let (s, h, b) = send(&app, request("/big", "k1", Some("big"), "")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_problem(&h, &b, 409);
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn other_methods_and_keyless_requests_pass_through() {
    let calls = Calls::default();
    let app = Router::new()
        .route("/pay", post(pay).get(pay))
        .route_layer(IdempotencyLayer::new(MemoryStore::new()))
        .with_state(calls.clone());
    let get = Request::get("/pay")
        .header("idempotency-key", "g")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, get).await.0, StatusCode::CREATED);
    let get = Request::get("/pay")
        .header("idempotency-key", "g")
        .body(Body::empty())
        .unwrap();
    assert!(send(&app, get).await.1.get("idempotent-replayed").is_none());
    assert_eq!(
        send(&app, request("/pay", "k", None, "")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(calls.get(), 3);
}

/// A store that always fails, to check the backend policy without a server.
#[derive(Clone)]
struct Down;

impl IdempotencyStore for Down {
    async fn claim(
        &self,
        _: &RecordKey,
        _: &str,
        _: &Owner,
        _: Duration,
    ) -> Result<Claim, palisade_core::BackendError> {
        Err(palisade_core::BackendError::Unavailable("down".into()))
    }
    async fn complete(
        &self,
        _: &RecordKey,
        _: &Owner,
        _: bytes::Bytes,
        _: Duration,
    ) -> Result<bool, palisade_core::BackendError> {
        Err(palisade_core::BackendError::Unavailable("down".into()))
    }
    async fn fail(
        &self,
        _: &RecordKey,
        _: &Owner,
        _: u32,
        _: bytes::Bytes,
        _: Duration,
    ) -> Result<Option<palisade_idempotency::store::Failed>, palisade_core::BackendError> {
        Err(palisade_core::BackendError::Unavailable("down".into()))
    }
    async fn renew(
        &self,
        _: &RecordKey,
        _: &Owner,
        _: Duration,
    ) -> Result<bool, palisade_core::BackendError> {
        Err(palisade_core::BackendError::Unavailable("down".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn backend_failure_fails_closed_by_default_or_open_when_asked() {
    let calls = Calls::default();
    let closed = app(Down, calls.clone());
    let (s, h, b) = send(&closed, request("/pay", "k1", Some("x"), "{}")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_problem(&h, &b, 503);
    assert!(h.contains_key("retry-after"));
    assert_eq!(calls.get(), 0);
    let open = app_with(
        IdempotencyLayer::new(Down).on_backend_error(OnBackendError::FailOpen),
        calls.clone(),
    );
    assert_eq!(
        send(&open, request("/pay", "k1", Some("x"), "{}")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(calls.get(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn arbitrary_key_headers_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let Ok(value) = http::HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let app = app(MemoryStore::new(), Calls::default());
            let mut req = request("/pay", "k1", None, "{}");
            req.headers_mut().insert("idempotency-key", value);
            let (status, headers, body) = send(&app, req).await;
            if status == StatusCode::BAD_REQUEST {
                assert_problem(&headers, &body, 400);
            } else {
                assert_eq!(status, StatusCode::CREATED);
            }
        });
    }
}

/// With `UnknownOutcome::Release`, a tower error from the inner service (not a response)
/// releases the key: the retry runs.
#[tokio::test(start_paused = true)]
async fn inner_service_errors_release_the_key() {
    use std::sync::atomic::AtomicBool;
    use tower::Layer;

    let fail = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = releasing().layer(tower::service_fn({
        let (fail, runs) = (fail.clone(), runs.clone());
        move |_req: Request<_>| {
            let (fail, runs) = (fail.clone(), runs.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if fail.load(Ordering::SeqCst) {
                    Err(std::io::Error::other("connection reset"))
                } else {
                    Ok(Response::new(Body::from("done")))
                }
            }
        }
    }));
    let req = || {
        Request::post("/pay")
            .header("idempotency-key", "e")
            .body(Body::empty())
            .unwrap()
    };
    assert!(svc.clone().oneshot(req()).await.is_err());
    fail.store(false, Ordering::SeqCst);
    let response = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replay = svc.oneshot(req()).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// Regression (the payments double charge): a 5xx after a write that timed out is an unknown
/// outcome. By default the claim is kept until its lease ends — retries get 409, never a second
/// run while the first effect may still land — and the run after the lease sees the same
/// `IdempotencyRecord`, so a keyed effect finds itself.
#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_keeps_the_claim_until_the_lease_ends() {
    let runs = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let handler = {
        let runs = runs.clone();
        move |axum::Extension(record): axum::Extension<IdempotencyRecord>| {
            let runs = runs.clone();
            async move {
                let mut runs = runs.lock().unwrap();
                runs.push(record.id().to_owned());
                if runs.len() == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, "the ledger timed out").into_response()
                } else {
                    (StatusCode::CREATED, "charged").into_response()
                }
            }
        }
    };
    let app = Router::new().route("/pay", post(handler)).route_layer(
        IdempotencyLayer::new(MemoryStore::new())
            .scope(Header::new("x-api-key"))
            .lease(Duration::from_secs(5)),
    );
    let pay = || request("/pay", "k1", Some("u"), "{}");
    assert_eq!(send(&app, pay()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..4 {
        let (status, headers, body) = send(&app, pay()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(headers["retry-after"], "1");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(send(&app, pay()).await.0, StatusCode::CREATED);
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 2, "one run during the lease, one after");
    assert_eq!(runs[0], runs[1], "both runs see the same record id");
    assert_eq!(runs[0].len(), 64);
}

/// A handler that declares a 5xx harmless (`NotApplied`) gets its key released at once.
#[tokio::test(start_paused = true)]
async fn a_not_applied_failure_releases_the_key() {
    let calls = Calls::default();
    let handler = |State(calls): State<Calls>| async move {
        if calls.0.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, "later").into_response();
            response.extensions_mut().insert(NotApplied);
            response
        } else {
            (StatusCode::CREATED, "ok").into_response()
        }
    };
    let app = Router::new()
        .route("/pay", post(handler))
        .route_layer(IdempotencyLayer::new(MemoryStore::new()).scope(Header::new("x-api-key")))
        .with_state(calls.clone());
    let pay = || request("/pay", "k1", Some("n"), "{}");
    assert_eq!(send(&app, pay()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(&app, pay()).await.0, StatusCode::CREATED);
    assert_eq!(calls.get(), 2);
}

/// A request dropped mid-handler, and an inner service error, are unknown outcomes: by default
/// the retry is refused until the lease ends, then runs.
#[tokio::test(start_paused = true)]
async fn dropped_requests_and_errors_keep_the_claim_by_default() {
    let calls = Calls::default();
    let app = app_with(
        IdempotencyLayer::new(MemoryStore::new()).lease(Duration::from_secs(3)),
        calls.clone(),
    );
    let slow = || request("/slow", "k1", Some("d"), "");
    let dropped = tokio::time::timeout(Duration::from_secs(1), send(&app, slow())).await;
    assert!(dropped.is_err());
    assert_eq!(send(&app, slow()).await.0, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retry = tokio::spawn({
        let app = app.clone();
        async move { send(&app, slow()).await }
    });
    assert_eq!(retry.await.unwrap().0, StatusCode::CREATED);
    assert_eq!(calls.get(), 2);

    use tower::Layer;
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(MemoryStore::new())
        .lease(Duration::from_secs(3))
        .layer(tower::service_fn({
            let runs = runs.clone();
            move |_req: Request<_>| {
                let runs = runs.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(std::io::Error::other("connection reset"))
                    } else {
                        Ok(Response::new(Body::from("done")))
                    }
                }
            }
        }));
    let req = || {
        Request::post("/pay")
            .header("idempotency-key", "e")
            .body(Body::empty())
            .unwrap()
    };
    assert!(svc.clone().oneshot(req()).await.is_err());
    let refused = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(svc.oneshot(req()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// Regression: one key sent to two spellings of a path ran twice (the record key used the raw
/// path), and the fingerprint called the second a different request (422).
#[tokio::test(start_paused = true)]
async fn every_spelling_of_a_path_is_one_record() {
    let calls = Calls::default();
    let app = Router::new()
        .route("/orders/{id}/pay", post(pay))
        .route_layer(IdempotencyLayer::new(MemoryStore::new()).scope(Header::new("x-api-key")))
        .with_state(calls.clone());
    let (first, _, body) = send(&app, request("/orders/o-1/pay", "k1", Some("p"), "{}")).await;
    assert_eq!(first, StatusCode::CREATED);
    for path in [
        "/orders/%6F-1/pay",
        "/orders/o%2d1/pay",
        "/orders/%6f%2D%31/pay",
    ] {
        let (status, headers, replay) = send(&app, request(path, "k1", Some("p"), "{}")).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {replay}");
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(replay, body);
    }
    assert_eq!(calls.get(), 1);
}

/// Regression: renewal was awaited inside the loop that polled the handler, so a 250 ms
/// handler took 2.9 s when renewals took 400 ms. The handler must finish on its own time.
#[tokio::test(start_paused = true)]
async fn slow_renewals_never_hold_the_handler_up() {
    let app = Router::new()
        .route(
            "/pay",
            post(|| async {
                for _ in 0..25 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (StatusCode::CREATED, "done")
            }),
        )
        .route_layer(
            IdempotencyLayer::new(Faulty {
                renew_delay: Duration::from_millis(400),
                ..Faulty::default()
            })
            .lease(Duration::from_millis(90)),
        );
    let started = tokio::time::Instant::now();
    let (status, _, _) = send(&app, request("/pay", "k1", Some("r"), "")).await;
    assert_eq!(status, StatusCode::CREATED);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "the handler took {took:?}"
    );
}

/// The in-memory store with faults: renewals that take `renew_delay`, and the first
/// `failing_completes` completions failing.
#[derive(Clone, Default)]
struct Faulty {
    store: MemoryStore,
    renew_delay: Duration,
    failing_completes: Arc<AtomicUsize>,
}

impl IdempotencyStore for Faulty {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, palisade_core::BackendError> {
        self.store.claim(key, fingerprint, owner, lease).await
    }
    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: bytes::Bytes,
        retention: Duration,
    ) -> Result<bool, palisade_core::BackendError> {
        let failing = self
            .failing_completes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            let timeout = Duration::from_millis(100);
            return Err(palisade_core::BackendError::Timeout(timeout));
        }
        self.store.complete(key, owner, response, retention).await
    }
    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: bytes::Bytes,
        retention: Duration,
    ) -> Result<Option<palisade_idempotency::store::Failed>, palisade_core::BackendError> {
        self.store
            .fail(key, owner, max_attempts, dead, retention)
            .await
    }
    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, palisade_core::BackendError> {
        tokio::time::sleep(self.renew_delay).await;
        self.store.renew(key, owner, lease).await
    }
}

/// Regression: "could not store the response" after a 201, and once the lease ran out the
/// retry ran the payment again. Storing is retried while the claim is ours, so the retry gets
/// the replay.
#[tokio::test(start_paused = true)]
async fn a_failed_store_is_retried_and_never_reruns() {
    let calls = Calls::default();
    let failures = Arc::new(AtomicUsize::new(2));
    let app = app_with(
        IdempotencyLayer::new(Faulty {
            failing_completes: failures,
            ..Faulty::default()
        })
        .lease(Duration::from_secs(6)),
        calls.clone(),
    );
    let pay = || request("/pay", "k1", Some("s"), "{}");
    let (first, _, body) = send(&app, pay()).await;
    assert_eq!(first, StatusCode::CREATED);
    // Past the lease: without the retried store the key would be free and run again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (status, headers, replay) = send(&app, pay()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replay, body);
    assert_eq!(calls.get(), 1);
}
