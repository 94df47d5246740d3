//! The journey of one request with a key: read and fingerprint the body, claim the key (or
//! wait for, replay or refuse a duplicate), run the inner service, settle the claim.

use std::{marker::PhantomData, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, request::Parts};
use http_body::Body;
use http_body_util::{Either, Full};
use palisade_core::{
    Responder,
    backend::Undo,
    backoff::{self, Jitter},
    body::{Collected, collect_within},
    deadline::Deadline,
    key::{Key, path::canonical_path},
    random,
    responder::BackendUnavailable,
};
use tokio::time::Instant;
use tower_service::Service;

use crate::{
    IdempotencyBody, IdempotencyRecord, IdempotencyRejection,
    body::{BoxError, InnerBody},
    capture::finish,
    claim_guard::ClaimGuard,
    header::IDEMPOTENT_REPLAYED,
    metrics::count,
    policy::{Config, InFlight},
    record::{NOT_KEPT, StoredResponse},
    store::{Claim, IdempotencyStore, Owner, RecordKey, renew_while},
};

pub(crate) struct Journey<Svc, S, R, ReqB, ResB> {
    pub(crate) inner: Svc,
    pub(crate) store: S,
    pub(crate) responder: R,
    pub(crate) config: Arc<Config>,
    pub(crate) _bodies: PhantomData<fn(ReqB) -> ResB>,
}

impl<Svc, S, R, ReqB, ResB> Journey<Svc, S, R, ReqB, ResB>
where
    Svc: Service<Request<InnerBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    Svc::Future: Send,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
    S: IdempotencyStore,
    R: Responder<IdempotencyBody<ResB>>,
{
    /// The journey of a request that carries idempotency key `key`, from caller `caller`
    /// (the service has checked the method, the key header and the caller already).
    pub(crate) async fn run(
        mut self,
        parts: Parts,
        body: ReqB,
        key: String,
        caller: Key,
    ) -> Result<Response<IdempotencyBody<ResB>>, Svc::Error> {
        let config = self.config.clone();
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
                        let request = Request::from_parts(parts, Either::Left(Full::new(body)));
                        let response = self.inner.call(request).await?;
                        Ok(response.map(IdempotencyBody::streamed))
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

    fn refuse(&self, rejection: IdempotencyRejection) -> Response<IdempotencyBody<ResB>> {
        refuse(&self.responder, rejection)
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

/// Counts `rejection` and renders it with `responder`.
pub(crate) fn refuse<R, ResB>(responder: &R, rejection: IdempotencyRejection) -> Response<ResB>
where
    R: Responder<ResB>,
{
    count(match rejection {
        IdempotencyRejection::KeyReused => "key_reused",
        IdempotencyRejection::InFlight { .. } => "in_flight",
        IdempotencyRejection::NotReplayable => "not_replayable",
        _ => "bad_request",
    });
    responder.respond(&rejection)
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
