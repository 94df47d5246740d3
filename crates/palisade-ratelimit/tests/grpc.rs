//! A real tonic server with `RateLimitLayer` on it and a real tonic client: the client sees
//! `RESOURCE_EXHAUSTED` with a retry pushback once its quota is spent.

use std::{convert::Infallible, future::Future, pin::Pin, task::Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use palisade_core::{key::Header, responder::Grpc};
use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
use palisade_testkit::grpc::RawCodec;
use tonic::{Code, Status, server::NamedService};

/// `test.Echo/Say` answers with the request's bytes.
#[derive(Clone)]
struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let say = tower::service_fn(|req: tonic::Request<Bytes>| async move {
                Ok::<_, Status>(tonic::Response::new(req.into_inner()))
            });
            Ok(tonic::server::Grpc::new(RawCodec).unary(say, req).await)
        })
    }
}

#[tokio::test]
async fn tonic_clients_get_resource_exhausted() {
    let layer = RateLimitLayer::builder(
        MemoryStore::new(),
        Policy::new("grpc", TokenBucket::new(2, 0.5).unwrap()).unwrap(),
    )
    .key(Header::new("x-api-key"))
    .responder(Grpc)
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = tonic::transport::Server::builder().layer(layer);
    let server = tokio::spawn(
        builder
            .add_service(Echo)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = tonic::client::Grpc::new(channel);
    let say = |key: &'static str| {
        let mut request = tonic::Request::new(Bytes::from_static(b"hello"));
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().unwrap());
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary::<Bytes, Bytes, _>(
                    request,
                    PathAndQuery::from_static("/test.Echo/Say"),
                    RawCodec,
                )
                .await
        }
    };

    for _ in 0..2 {
        let reply = say("alice").await.unwrap();
        assert_eq!(reply.into_inner(), Bytes::from_static(b"hello"));
    }
    let refused = say("alice").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let pushback: u64 = refused
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushback > 0 && pushback <= 2_000, "{pushback}");
    // Another caller has its own quota.
    assert!(say("bob").await.is_ok());
    server.abort();
}
