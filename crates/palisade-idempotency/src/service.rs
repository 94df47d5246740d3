//! [`Idempotency`]: the service the layer builds, and the request's journey through it.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header, request::Parts};
use http_body::Body;
use http_body_util::{Either, Full};
use palisade_core::{
    Responder,
    backend::Undo,
    backoff::{self, Jitter},
    body::{Collected, collect_within},
    deadline::Deadline,
    key::{KeyExtractor, RequestHead, path::canonical_path},
    random,
    responder::{BackendUnavailable, MissingKey},
    wire::grpc_failed,
};
use tokio::time::Instant;
use tower_service::Service;

use crate::{
    IdempotencyBody, IdempotencyRecord, IdempotencyRejection, NotApplied, UnknownOutcome,
    body::BoxError,
    header::{IDEMPOTENT_REPLAYED, KeyProblem, idempotency_key},
    layer::{Config, InFlight},
    record::{NOT_KEPT, StoredResponse},
    store::{Claim, IdempotencyStore, Owner, RecordKey, renew_while},
};

/// The request body the inner service receives: the buffered body, or the original one when
/// the layer lets the request through untouched.
pub type InnerBody<B> = Either<Full<Bytes>, B>;

/// The service [`IdempotencyLayer`](crate::IdempotencyLayer) builds.
#[derive(Clone)]
pub struct Idempotency<Svc, S, K, R> {
    pub(crate) inner: Svc,
    pub(crate) store: S,
    pub(crate) scope: Arc<K>,
    pub(crate) responder: R,
    pub(crate) config: Arc<Config>,
}

impl<Svc, S, K, R> Idempotency<Svc, S, K, R> {
    palisade_core::inner_service_accessors!(Svc);
}

impl<Svc: fmt::Debug, S: fmt::Debug, K, R> fmt::Debug for Idempotency<Svc, S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The future of [`Idempotency`]: boxed, since a request takes several store round trips
/// (claim, renewals, complete) around the inner call.
pub type IdempotencyFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<Svc, S, K, R, ReqB, ResB> Service<Request<ReqB>> for Idempotency<Svc, S, K, R>
where
    Svc: Service<Request<InnerBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Error: Send,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
    S: IdempotencyStore,
    K: KeyExtractor,
    R: Responder<IdempotencyBody<ResB>>,
{
    type Response = Response<IdempotencyBody<ResB>>;
    type Error = Svc::Error;
    type Future = IdempotencyFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // Use the service that was readied, leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let journey = Journey {
            inner,
            store: self.store.clone(),
            scope: self.scope.clone(),
            responder: self.responder.clone(),
            config: self.config.clone(),
            _bodies: PhantomData,
        };
        Box::pin(journey.run(request))
    }
}

struct Journey<Svc, S, K, R, ReqB, ResB> {
    inner: Svc,
    store: S,
    scope: Arc<K>,
    responder: R,
    config: Arc<Config>,
    _bodies: PhantomData<fn(ReqB) -> ResB>,
}

fn count(outcome: &'static str) {
    metrics::counter!("palisade_idempotency_requests_total", "outcome" => outcome).increment(1);
}

impl<Svc, S, K, R, ReqB, ResB> Journey<Svc, S, K, R, ReqB, ResB>
where
    Svc: Service<Request<InnerBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    Svc::Future: Send,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
    S: IdempotencyStore,
    K: KeyExtractor,
    R: Responder<IdempotencyBody<ResB>>,
{
    async fn run(
        mut self,
        request: Request<ReqB>,
    ) -> Result<Response<IdempotencyBody<ResB>>, Svc::Error> {
        let config = self.config.clone();
        let (parts, body) = request.into_parts();
        if !config.methods.contains(&parts.method) {
            return self.pass(parts, Either::Right(body)).await;
        }
        let key = match idempotency_key(&parts.headers) {
            Ok(Some(key)) => key,
            Ok(None) if !config.required => {
                count("bypassed");
                return self.pass(parts, Either::Right(body)).await;
            }
            Ok(None) => return Ok(self.refuse(IdempotencyRejection::BadKey(KeyProblem::Missing))),
            Err(problem) => return Ok(self.refuse(IdempotencyRejection::BadKey(problem))),
        };
        let caller = match self.scope.extract(&RequestHead::from(&parts)) {
            Ok(caller) => caller,
            Err(error) => {
                count("bad_request");
                return Ok(self.responder.respond(&MissingKey(error)));
            }
        };
        let body = match read_limited(body, config.max_request_body).await {
            Ok(body) => body,
            Err(rejection) => return Ok(self.refuse(rejection)),
        };
        let fingerprint = config.fingerprint.compute(&parts, &body);
        // The request's budget (if a `DeadlineLayer` set one) bounds every store call.
        let deadline = parts.extensions.get::<Deadline>().copied();
        // The canonical path: one key sent to `/orders/o-1` and `/orders/%6F-1` is one record.
        let path = canonical_path(parts.uri.path());
        let record = RecordKey::new(&config.namespace, &caller, &path, &key);
        let owner = Owner::unique();

        let started = Instant::now();
        // Waits for an in-flight duplicate: equal jitter, 10 ms doubling to 250 ms.
        let mut waits = 0;
        let mut pause = Duration::from_millis(10);
        loop {
            // Armed until the claim's answer is known: a timeout, or this request dropped while
            // the claim is in flight, may leave a claim nobody holds — released with the owner
            // token only we know, so a retry is not refused for a whole lease.
            // The closure borrows and clones only if it fires: nothing allocated per request.
            let (store, retention) = (&self.store, config.retention);
            let undo = Undo::new("idempotency", || {
                let (store, record, owner) = (store.clone(), record.clone(), owner.clone());
                async move { store.release_late_claim(&record, &owner, retention).await }
            });
            let claim = self
                .store
                .claim(&record, &fingerprint, &owner, config.lease);
            match undo.settle(Deadline::bound(deadline, claim).await) {
                Ok(Claim::Acquired) => break,
                Ok(Claim::Completed(stored)) => return Ok(self.replay(stored)),
                Ok(Claim::Mismatch) => return Ok(self.refuse(IdempotencyRejection::KeyReused)),
                Ok(Claim::InFlight { lease_left }) => {
                    let waited = started.elapsed();
                    match config.in_flight {
                        InFlight::Wait(max)
                            if waited < max && deadline.is_none_or(|d| d.remaining() > pause) =>
                        {
                            let nap = pause.min(max - waited).min(lease_left);
                            tokio::time::sleep(nap.max(Duration::from_millis(1))).await;
                            waits += 1;
                            pause = backoff::delay(
                                Jitter::Equal,
                                Duration::from_millis(10),
                                Duration::from_millis(250),
                                waits,
                                pause,
                                random::unit(),
                            );
                        }
                        _ => {
                            return Ok(self.refuse(IdempotencyRejection::InFlight {
                                retry_after: Duration::from_secs(1),
                            }));
                        }
                    }
                }
                Err(error) => {
                    count("backend_error");
                    return if config.on_backend_error.apply("idempotency", &error) {
                        self.pass(parts, Either::Left(Full::new(body))).await
                    } else {
                        Ok(self.responder.respond(&BackendUnavailable {
                            layer: "idempotency",
                            source: error,
                        }))
                    };
                }
            }
        }

        // This request owns the key: run it, renewing the lease; then store, release or keep.
        let guard = ClaimGuard {
            store: self.store.clone(),
            record,
            owner,
            retention: config.retention,
            lease: config.lease,
            unknown: config.unknown_outcome,
            deadline,
            armed: true,
        };
        let mut request = Request::from_parts(parts, Either::Left(Full::new(body)));
        request.extensions_mut().insert(IdempotencyRecord {
            key: guard.record.clone(),
        });
        let call = self.inner.call(request);
        let response = match renew_while(
            &guard.store,
            &guard.record,
            &guard.owner,
            config.lease,
            call,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => {
                count("failed");
                guard.unknown().await;
                return Err(error);
            }
        };
        count("executed");
        Ok(finish(&config, guard, response).await)
    }

    async fn pass(
        &mut self,
        parts: Parts,
        body: InnerBody<ReqB>,
    ) -> Result<Response<IdempotencyBody<ResB>>, Svc::Error> {
        let response = self.inner.call(Request::from_parts(parts, body)).await?;
        Ok(response.map(IdempotencyBody::streamed))
    }

    fn refuse(&self, rejection: IdempotencyRejection) -> Response<IdempotencyBody<ResB>> {
        count(match rejection {
            IdempotencyRejection::KeyReused => "key_reused",
            IdempotencyRejection::InFlight { .. } => "in_flight",
            IdempotencyRejection::NotReplayable => "not_replayable",
            _ => "bad_request",
        });
        self.responder.respond(&rejection)
    }

    fn replay(&self, stored: Bytes) -> Response<IdempotencyBody<ResB>> {
        if stored.as_ref() == NOT_KEPT {
            return self.refuse(IdempotencyRejection::NotReplayable);
        }
        match StoredResponse::decode(stored) {
            Ok(stored) => {
                count("replayed");
                let mut response =
                    Response::new(IdempotencyBody::whole(stored.body, stored.trailers));
                *response.status_mut() = stored.status;
                *response.headers_mut() = stored.headers;
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                response
            }
            Err(error) => {
                count("backend_error");
                tracing::error!(target: "palisade::idempotency", %error, "cannot replay");
                self.responder.respond(&BackendUnavailable {
                    layer: "idempotency",
                    source: palisade_core::BackendError::Protocol(error.to_string()),
                })
            }
        }
    }
}

// The owner's response: stored when it should be, otherwise the claim is released.
async fn finish<S, ResB>(
    config: &Config,
    guard: ClaimGuard<S>,
    response: Response<ResB>,
) -> Response<IdempotencyBody<ResB>>
where
    S: IdempotencyStore,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (head, body) = response.into_parts();
    if head.status.is_server_error() || grpc_failed(&head.headers) {
        // A failure the handler did not declare harmless: its effect may have happened.
        count("not_stored");
        guard.failed(&head.extensions).await;
        return Response::from_parts(head, IdempotencyBody::streamed(body));
    }
    if head.status.is_client_error() && !config.store_client_errors {
        count("not_stored");
        guard.release().await;
        return Response::from_parts(head, IdempotencyBody::streamed(body));
    }
    // Decided without an await, so the body's error (possibly not `Send`) is boxed before
    // the claim is settled.
    let (body, settle) = match collect_within(body, config.max_response_body).await {
        Collected::Complete { data, trailers } => {
            let settle = if trailers.as_ref().is_some_and(grpc_failed) {
                Settle::Failed
            } else {
                let stored = StoredResponse {
                    status: head.status,
                    headers: kept_headers(&head.headers, config),
                    body: data.clone(),
                    trailers: trailers.clone(),
                };
                Settle::Complete(stored.encode())
            };
            (IdempotencyBody::whole(data, trailers), settle)
        }
        Collected::TooLarge { prefix, rest } => {
            tracing::warn!(
                target: "palisade::idempotency",
                limit = config.max_response_body,
                "response too large to keep; retries with this key will get 409"
            );
            let settle = Settle::Complete(Bytes::from_static(NOT_KEPT));
            (IdempotencyBody::prefixed(prefix, rest), settle)
        }
        // The handler answered, then its body failed: what it did is not known.
        Collected::Failed { prefix, error } => {
            (IdempotencyBody::failed(prefix, error), Settle::Unknown)
        }
    };
    match settle {
        Settle::Complete(stored) => guard.complete(stored).await,
        Settle::Failed => {
            count("not_stored");
            guard.failed(&head.extensions).await;
        }
        Settle::Unknown => guard.unknown().await,
    }
    Response::from_parts(head, body)
}

/// How a buffered response settles its claim.
enum Settle {
    /// Completed with this stored response.
    Complete(Bytes),
    /// A failure the handler did not declare harmless.
    Failed,
    /// The outcome is not known.
    Unknown,
}

/// Settles the claim however the request ends: completed with the response, released, or —
/// when the outcome is unknown (an error, a 5xx, a panic, the future dropped mid-handler) —
/// handled by the [`UnknownOutcome`] policy.
struct ClaimGuard<S: IdempotencyStore> {
    store: S,
    record: RecordKey,
    owner: Owner,
    retention: Duration,
    lease: Duration,
    unknown: UnknownOutcome,
    deadline: Option<Deadline>,
    armed: bool,
}

impl<S: IdempotencyStore> ClaimGuard<S> {
    async fn complete(mut self, response: Bytes) {
        self.armed = false;
        let complete =
            self.store
                .complete(&self.record, &self.owner, response.clone(), self.retention);
        match Deadline::bound(self.deadline, complete).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                target: "palisade::idempotency",
                "lease lost before the response was stored; it will not be replayed"
            ),
            // The claim is still ours (it is not released): keep trying while it lasts, so a
            // store that returns within the lease still records the response.
            Err(error) => {
                tracing::error!(
                    target: "palisade::idempotency",
                    %error,
                    "could not store the response; retrying while the claim lasts"
                );
                let (store, record, owner) =
                    (self.store.clone(), self.record.clone(), self.owner.clone());
                let (retention, within) = (self.retention, self.lease * 2 / 3);
                spawn(async move {
                    retry_complete(store, record, owner, response, retention, within).await;
                });
            }
        }
    }

    async fn release(mut self) {
        self.armed = false;
        let (store, record, owner) = (self.store.clone(), self.record.clone(), self.owner.clone());
        let retention = self.retention;
        let release = async move {
            if let Err(error) = store.release(&record, &owner, retention).await {
                tracing::warn!(
                    target: "palisade::idempotency",
                    %error,
                    "could not release the claim; it frees itself when the lease runs out"
                );
            }
        };
        // The answer waits no longer than the budget; the release carries on behind it.
        Deadline::finish(self.deadline, release).await;
    }

    // A failed answer (5xx, failed gRPC status): released if the handler marked it
    // `NotApplied`, else an unknown outcome.
    async fn failed(self, response: &http::Extensions) {
        if response.get::<NotApplied>().is_some() {
            self.release().await;
        } else {
            self.unknown().await;
        }
    }

    async fn unknown(self) {
        count("unknown");
        match self.unknown {
            UnknownOutcome::Release => self.release().await,
            UnknownOutcome::KeepClaim => self.keep(),
        }
    }

    // Leaves the claim to expire with its lease (no longer renewed).
    fn keep(mut self) {
        self.armed = false;
        tracing::warn!(
            target: "palisade::idempotency",
            "outcome unknown: the claim is kept until its lease ends"
        );
    }
}

impl<S: IdempotencyStore> Drop for ClaimGuard<S> {
    // Dropped armed: the request future was dropped mid-handler, or the handler panicked.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        count("unknown");
        if self.unknown == UnknownOutcome::KeepClaim {
            return;
        }
        let store = self.store.clone();
        let record = self.record.clone();
        let owner = self.owner.clone();
        let retention = self.retention;
        spawn(async move {
            let _ = store.release(&record, &owner, retention).await;
        });
    }
}

fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
    }
}

/// Stores the response with growing pauses until the store answers or `within` has passed.
async fn retry_complete<S: IdempotencyStore>(
    store: S,
    record: RecordKey,
    owner: Owner,
    response: Bytes,
    retention: Duration,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut tries = 0;
    let mut pause = Duration::from_millis(50);
    while Instant::now() + pause < deadline {
        tokio::time::sleep(pause).await;
        tries += 1;
        let (base, cap) = (Duration::from_millis(50), Duration::from_secs(2));
        pause = backoff::delay(Jitter::Equal, base, cap, tries, pause, random::unit());
        match store
            .complete(&record, &owner, response.clone(), retention)
            .await
        {
            Ok(true) => {
                tracing::info!(target: "palisade::idempotency", "response stored on a retry");
                return;
            }
            Ok(false) => break,
            Err(_) => continue,
        }
    }
    tracing::error!(
        target: "palisade::idempotency",
        "the response was never stored; a retry after the lease runs the request again"
    );
}

/// The request body in memory (to fingerprint it, and to send it on), or why not.
async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, IdempotencyRejection>
where
    B: Body<Data = Bytes>,
{
    match collect_within(std::pin::pin!(body), limit).await {
        Collected::Complete { data, .. } => Ok(data),
        Collected::TooLarge { .. } => Err(IdempotencyRejection::BodyTooLarge { limit }),
        Collected::Failed { .. } => Err(IdempotencyRejection::BodyUnreadable),
    }
}

const NEVER_KEPT: [HeaderName; 11] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::DATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

fn kept_headers(headers: &HeaderMap, config: &Config) -> HeaderMap {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let drop = NEVER_KEPT.contains(name)
            || (name == header::SET_COOKIE && !config.keep_set_cookie)
            || config.excluded_headers.contains(name)
            || listed.iter().any(|l| l == name.as_str());
        if !drop {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_cookies_are_not_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("connection", "x-trace, keep-alive".parse().unwrap());
        headers.insert("x-trace", "1".parse().unwrap());
        headers.insert("set-cookie", "s=1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("location", "/payments/1".parse().unwrap());
        let kept = kept_headers(&headers, &Config::default());
        let names: Vec<_> = kept.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "location"]);
        let config = Config {
            keep_set_cookie: true,
            ..Config::default()
        };
        assert!(kept_headers(&headers, &config).contains_key("set-cookie"));
    }
}
