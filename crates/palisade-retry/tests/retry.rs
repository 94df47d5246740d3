//! Retries against a real hyper server on loopback that fails on a script, and the timing
//! rules under paused time.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use palisade_breaker::{
    AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, CircuitOpen, OpenDuration,
};
use palisade_retry::{Jitter, ReplayBody, RetryBudget, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceExt};

/// What the scripted server saw.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<(Method, Bytes)>>>);

/// A server answering the scripted statuses in order (then 200), recording every request.
async fn scripted(statuses: &[u16]) -> (SocketAddr, Seen) {
    let script = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<u16>>(),
    ));
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (script2, seen2) = (script.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (script, seen) = (script2.clone(), seen2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (script, seen) = (script.clone(), seen.clone());
                    async move {
                        let method = req.method().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.0.lock().unwrap().push((method, body));
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"answer")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

type HttpClient =
    Client<hyper_util::client::legacy::connect::HttpConnector, ReplayBody<Full<Bytes>>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts).backoff(
        Jitter::Full,
        Duration::from_millis(1),
        Duration::from_millis(5),
    )
}

fn request(method: Method, addr: SocketAddr, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}/charge"))
        .body(Full::new(body))
        .unwrap()
}

#[tokio::test]
async fn retries_retryable_statuses_until_success() {
    let (addr, seen) = scripted(&[503, 502, 200]).await;
    let svc = RetryLayer::new(fast(5)).layer(client());
    let r = svc
        .oneshot(request(Method::GET, addr, Bytes::new()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(seen.0.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_never_retries_client_errors() {
    let (addr, seen) = scripted(&[503, 503, 503, 503]).await;
    let svc = RetryLayer::new(fast(3)).layer(client());
    let r = svc
        .oneshot(request(Method::GET, addr, Bytes::new()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.0.lock().unwrap().len(), 3);

    for status in [400, 401, 403, 404, 409, 422] {
        let (addr, seen) = scripted(&[status]).await;
        let svc = RetryLayer::new(fast(3)).layer(client());
        let r = svc
            .oneshot(request(Method::GET, addr, Bytes::new()))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(seen.0.lock().unwrap().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn post_is_retried_only_with_an_idempotency_key_and_the_body_is_replayed() {
    let body = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let (addr, seen) = scripted(&[503, 503]).await;
    let svc = RetryLayer::new(fast(3)).layer(client());
    let r = svc
        .oneshot(request(Method::POST, addr, body.clone()))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "POST without a key: sent once"
    );
    assert_eq!(seen.0.lock().unwrap().len(), 1);

    let (addr, seen) = scripted(&[503, 503]).await;
    let svc = RetryLayer::new(fast(3)).layer(client());
    let mut req = request(Method::POST, addr, body.clone());
    req.headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    let r = svc.oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|(m, b)| *m == Method::POST && *b == body),
        "replayed byte for byte"
    );
}

#[tokio::test]
async fn an_oversized_body_is_sent_once_in_full() {
    let body = Bytes::from(vec![7u8; 200_000]);
    let (addr, seen) = scripted(&[503]).await;
    let svc = RetryLayer::new(fast(3).body_limit(64 * 1024)).layer(client());
    let r = svc
        .oneshot(request(Method::PUT, addr, body.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, body);
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let counting = tower::service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        client().oneshot(req)
    });
    let svc = RetryLayer::new(fast(4)).layer(counting);
    let err = svc
        .oneshot(request(Method::GET, addr, Bytes::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client error"), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

/// An upstream (no network) answering scripted statuses and headers, noting when each attempt
/// arrived on tokio's (paused) clock.
type Times = Arc<Mutex<Vec<Instant>>>;

fn timed_upstream(answers: Vec<(u16, Option<&'static str>)>) -> (impl Upstream, Times) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let t = times.clone();
    let svc = tower::service_fn(move |_req: Request<ReplayBody<String>>| {
        t.lock().unwrap().push(Instant::now());
        let (status, retry_after) = answers.lock().unwrap().pop_front().unwrap_or((200, None));
        async move {
            let mut b = Response::builder().status(status);
            if let Some(v) = retry_after {
                b = b.header("retry-after", v);
            }
            Ok::<_, Infallible>(b.body(()).unwrap())
        }
    });
    (svc, times)
}

trait Upstream:
    tower::Service<
        Request<ReplayBody<String>>,
        Response = Response<()>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Upstream for T where
    T: tower::Service<
            Request<ReplayBody<String>>,
            Response = Response<()>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

fn get() -> Request<String> {
    Request::get("http://upstream/x")
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_capped() {
    let (svc, times) = timed_upstream(vec![(429, Some("2")), (503, Some("3600")), (200, None)]);
    let client = RetryLayer::new(fast(5).max_server_wait(Duration::from_secs(60))).layer(svc);
    let r = client.oneshot(get()).await.unwrap();
    // The first wait is the server's 2 s; an hour is beyond the cap: stop there.
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 2);
    assert_eq!(times[1] - times[0], Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_delays_stay_within_the_exponential_envelope() {
    for _ in 0..20 {
        let (svc, times) = timed_upstream(vec![(503, None); 6]);
        let policy = RetryPolicy::new(6).backoff(
            Jitter::Full,
            Duration::from_millis(100),
            Duration::from_millis(1000),
        );
        let _ = RetryLayer::new(policy)
            .layer(svc)
            .oneshot(get())
            .await
            .unwrap();
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 6);
        for (n, pair) in times.windows(2).enumerate() {
            let envelope = Duration::from_millis((100u64 << n).min(1000));
            assert!(
                pair[1] - pair[0] <= envelope,
                "retry {n}: {:?}",
                pair[1] - pair[0]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_every_attempt_and_wait() {
    let (svc, times) = timed_upstream(vec![(503, Some("1")); 10]);
    let client = RetryLayer::new(fast(10).deadline(Duration::from_millis(2500))).layer(svc);
    let r = client.oneshot(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Attempts at 0 s, 1 s, 2 s; a third wait would end past 2.5 s.
    assert_eq!(times.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retry_amplification() {
    let (svc, times) = timed_upstream(vec![(503, None); 10_000]);
    let budget = RetryBudget::new(0.2, 0);
    let client = RetryLayer::new(fast(4)).budget(budget).layer(svc);
    for _ in 0..100 {
        let _ = client.clone().oneshot(get()).await.unwrap();
    }
    let attempts = times.lock().unwrap().len();
    assert!(
        (100..=120).contains(&attempts),
        "{attempts} attempts for 100 requests"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_not_retried() {
    let (svc, times) = timed_upstream(vec![(503, None); 10_000]);
    let breaker = CircuitBreaker::new(
        BreakerPolicy::builder("upstream")
            .count_window(2)
            .minimum_calls(2)
            .open_for(OpenDuration::fixed(Duration::from_secs(60)))
            .build()
            .unwrap(),
    );
    // The order `palisade::retry::client_stack` builds: the breaker outside the retries.
    let stack = CircuitBreakerLayer::new(breaker.clone())
        .on_open(AsError)
        .layer(RetryLayer::new(fast(3)).layer(svc));
    for _ in 0..2 {
        let r = stack.clone().oneshot(get()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let before = times.lock().unwrap().len();
    assert_eq!(before, 6, "3 attempts per logical call");
    for _ in 0..5 {
        let err: BoxError = stack.clone().oneshot(get()).await.unwrap_err();
        assert!(err.downcast_ref::<CircuitOpen>().is_some());
    }
    assert_eq!(times.lock().unwrap().len(), before, "no attempt while open");
}

#[tokio::test(start_paused = true)]
async fn retries_are_published_as_events() {
    let (svc, _times) = timed_upstream(vec![(503, None), (429, Some("1")), (200, None)]);
    let layer = RetryLayer::new(fast(5));
    let mut events = layer.subscribe();
    let r = layer.layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = events.try_recv().unwrap();
    assert_eq!(
        (first.attempt, first.reason.as_str()),
        (2, "503 Service Unavailable")
    );
    let second = events.try_recv().unwrap();
    assert_eq!(second.attempt, 3);
    assert_eq!(second.delay, Duration::from_secs(1));
    assert!(events.try_recv().is_err());
}

/// Regression: a request body that failed while the layer buffered it reached the inner service
/// as the bytes read so far followed by the rest of the stream — here, the clean end: a
/// truncated request sent as if it were whole. The inner service must see the error.
#[tokio::test]
async fn a_body_that_fails_while_buffered_reaches_the_inner_service_as_an_error() {
    use http_body::Frame;
    use http_body_util::StreamBody;

    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"{\"amount\":"))),
        Err(std::io::Error::other("client reset the upload")),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let seen = Arc::new(std::sync::Mutex::new(None));
    let upstream = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<ReplayBody<StreamBody<_>>>| {
            let seen = seen.clone();
            async move {
                let read = req.into_body().collect().await.map(|c| c.to_bytes());
                *seen.lock().unwrap() = Some(read.map_err(|e| e.to_string()));
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let svc = RetryLayer::new(fast(3)).layer(upstream);
    let req = Request::put("http://upstream/orders/1").body(body).unwrap();
    let _ = svc.oneshot(req).await;
    let seen = seen
        .lock()
        .unwrap()
        .take()
        .expect("the request reached the inner service");
    assert_eq!(seen, Err("client reset the upload".to_owned()));
}

/// Regression: the layer ignored the request's own deadline (a `DeadlineLayer` budget) and
/// kept retrying after the caller's budget was spent.
#[tokio::test(start_paused = true)]
async fn the_request_s_deadline_bounds_attempts_and_waits() {
    use palisade_core::deadline::DeadlineLayer;

    let (svc, times) = timed_upstream(vec![(503, None); 100]);
    // Waits of 1 s, far from the policy's (absent) deadline; the request has 2.5 s.
    let policy = RetryPolicy::new(50).backoff(
        Jitter::Constant,
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let client =
        DeadlineLayer::new(Duration::from_millis(2500)).layer(RetryLayer::new(policy).layer(svc));
    let started = Instant::now();
    let response = client.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        times.lock().unwrap().len(),
        3,
        "attempts at 0 s, 1 s and 2 s, then no time left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_cut_off_and_the_next_one_is_made() {
    // The first two attempts hang; the third answers at once.
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let svc = tower::service_fn(move |_req: Request<ReplayBody<String>>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(Response::new(()))
        }
    });
    let policy = fast(3).attempt_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let r = RetryLayer::new(policy)
        .layer(svc)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Two cut-off attempts of 100 ms, two waits of at most 5 ms.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() <= Duration::from_millis(210));

    // Every attempt hangs: the last one's timeout is the error.
    let svc = tower::service_fn(|_req: Request<ReplayBody<String>>| async {
        std::future::pending::<Result<Response<()>, Infallible>>().await
    });
    let policy = fast(2).attempt_timeout(Duration::from_millis(100));
    let error = RetryLayer::new(policy)
        .layer(svc)
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<palisade_retry::AttemptTimedOut>(),
        Some(&palisade_retry::AttemptTimedOut(Duration::from_millis(100)))
    );
}

/// An upstream that is ready only once per readiness check, and busy (not ready, for every
/// clone: one connection shared) for 50 ms after each call — it panics if called without being
/// readied since its last call, as tower's contract allows.
struct Strict {
    readied: bool,
    busy_until: Arc<Mutex<Option<Instant>>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    calls: Arc<AtomicU32>,
}

use std::{
    pin::Pin,
    task::{Context, Poll},
};

impl Clone for Strict {
    // A clone is a new handle: it must be readied before its first call.
    fn clone(&self) -> Self {
        Strict {
            readied: false,
            busy_until: self.busy_until.clone(),
            sleep: None,
            calls: self.calls.clone(),
        }
    }
}

impl tower::Service<Request<ReplayBody<String>>> for Strict {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        let busy = *self.busy_until.lock().unwrap();
        if let Some(until) = busy {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            *self.busy_until.lock().unwrap() = None;
        }
        self.readied = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<ReplayBody<String>>) -> Self::Future {
        assert!(self.readied, "called without poll_ready");
        self.readied = false;
        *self.busy_until.lock().unwrap() = Some(Instant::now() + Duration::from_millis(50));
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let status = if n < 2 { 503 } else { 200 };
        std::future::ready(Ok(Response::builder().status(status).body(()).unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn every_retry_waits_for_the_service_to_be_ready_again() {
    let calls = Arc::new(AtomicU32::new(0));
    let strict = Strict {
        readied: false,
        busy_until: Arc::default(),
        sleep: None,
        calls: calls.clone(),
    };
    let started = Instant::now();
    let policy = RetryPolicy::new(3).backoff(
        Jitter::Constant,
        Duration::from_millis(1),
        Duration::from_millis(1),
    );
    let r = RetryLayer::new(policy)
        .layer(strict)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Each retry waited out the service's 50 ms of unreadiness (longer than the backoff).
    assert!(started.elapsed() >= Duration::from_millis(100));

    // Readiness is bounded by the attempt's time limit too.
    let busy = Strict {
        readied: false,
        busy_until: Arc::default(),
        sleep: None,
        calls: Arc::new(AtomicU32::new(0)),
    };
    let policy = RetryPolicy::new(3)
        .backoff(
            Jitter::Constant,
            Duration::from_millis(1),
            Duration::from_millis(1),
        )
        .attempt_timeout(Duration::from_millis(10));
    let error = RetryLayer::new(policy)
        .layer(busy)
        .oneshot(get())
        .await
        .unwrap_err();
    assert!(error.is::<palisade_retry::AttemptTimedOut>(), "{error}");
}

/// An upstream whose readiness fails once (a refused connection), and which panics if a
/// failed instance is polled again — tower treats a `poll_ready` error as final.
struct FailsOnce {
    failed: bool,
    polls: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

impl Clone for FailsOnce {
    fn clone(&self) -> Self {
        FailsOnce {
            failed: false,
            polls: self.polls.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl tower::Service<Request<ReplayBody<String>>> for FailsOnce {
    type Response = Response<()>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<()>, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        assert!(
            !self.failed,
            "a service whose poll_ready failed was polled again"
        );
        // The second readiness check overall (the first retry's) fails.
        if self.polls.fetch_add(1, Ordering::SeqCst) == 1 {
            self.failed = true;
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionRefused.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<ReplayBody<String>>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let status = if n == 0 { 503 } else { 200 };
        std::future::ready(Ok(Response::builder().status(status).body(()).unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_whose_readiness_failed_is_replaced_by_a_fresh_clone() {
    let (polls, calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let upstream = FailsOnce {
        failed: false,
        polls: polls.clone(),
        calls: calls.clone(),
    };
    // 503, then a refused connection while readying, then 200 — on a fresh clone.
    let r = RetryLayer::new(fast(4))
        .layer(upstream)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}
