//! A real tonic server with `IdempotencyLayer` on it and a real tonic client: a repeated call
//! with the same `idempotency-key` metadata is answered from the store (trailers included), a
//! failed call (non-zero `grpc-status`) is not stored, and a different caller is isolated.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use palisade_core::{key::Header, responder::Grpc};
use palisade_idempotency::{IdempotencyLayer, MemoryStore, UnknownOutcome};
use palisade_testkit::grpc::RawCodec;
use tonic::{Code, Status, server::NamedService};

/// `test.Pay/Charge` answers `charge <n>`; `test.Pay/Fail` fails the first time.
#[derive(Clone, Default)]
struct Pay(Arc<AtomicUsize>);

impl NamedService for Pay {
    const NAME: &'static str = "test.Pay";
}

impl tower::Service<http::Request<tonic::body::Body>> for Pay {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let calls = self.0.clone();
        Box::pin(async move {
            let fail = req.uri().path().ends_with("/Fail");
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let charge = tower::service_fn(move |_: tonic::Request<Bytes>| async move {
                if fail && n == 1 {
                    return Err(Status::unavailable("card network down"));
                }
                Ok(tonic::Response::new(Bytes::from(format!("charge {n}"))))
            });
            Ok(tonic::server::Grpc::new(RawCodec).unary(charge, req).await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_are_replayed() {
    let pay = Pay::default();
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .scope(Header::new("x-api-key"))
        .require_key()
        // UNAVAILABLE before any effect: this service's failures are safe to run again.
        .on_unknown_outcome(UnknownOutcome::Release)
        .responder(Grpc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = tonic::transport::Server::builder().layer(layer);
    let server = tokio::spawn(
        builder
            .add_service(pay.clone())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = tonic::client::Grpc::new(channel);
    let call = |method: &'static str, caller: &'static str, key: Option<&'static str>| {
        let mut request = tonic::Request::new(Bytes::from_static(b"500 EUR"));
        request
            .metadata_mut()
            .insert("x-api-key", caller.parse().unwrap());
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("idempotency-key", key.parse().unwrap());
        }
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary::<Bytes, Bytes, _>(request, PathAndQuery::from_static(method), RawCodec)
                .await
        }
    };

    let first = call("/test.Pay/Charge", "alice", Some("k1")).await.unwrap();
    assert_eq!(first.into_inner(), Bytes::from_static(b"charge 1"));
    let replay = call("/test.Pay/Charge", "alice", Some("k1")).await.unwrap();
    assert_eq!(
        replay.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(replay.into_inner(), Bytes::from_static(b"charge 1"));
    // Another caller, same key: its own operation.
    let bob = call("/test.Pay/Charge", "bob", Some("k1")).await.unwrap();
    assert_eq!(bob.into_inner(), Bytes::from_static(b"charge 2"));
    // A missing key is INVALID_ARGUMENT.
    let missing = call("/test.Pay/Charge", "alice", None).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    // A failed call is not stored: the retry runs and succeeds.
    pay.0.store(0, Ordering::SeqCst);
    let failed = call("/test.Pay/Fail", "alice", Some("k2"))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    let retried = call("/test.Pay/Fail", "alice", Some("k2")).await.unwrap();
    assert_eq!(retried.into_inner(), Bytes::from_static(b"charge 2"));
    assert_eq!(pay.0.load(Ordering::SeqCst), 2);
    server.abort();
}
