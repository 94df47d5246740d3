//! The tonic example, driven by a real tonic client: quotes, `RESOURCE_EXHAUSTED` over the
//! rate, `UNAVAILABLE` from the open breaker (without reaching the service), and recovery.

use std::{process::Stdio, time::Duration};

use http::uri::PathAndQuery;
use palisade_examples::JsonCodec;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_breaker_over_grpc() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_grpc-quotes"))
        .env("GRPC_ADDR", "127.0.0.1:0")
        .env("GRPC_RATE_CAPACITY", "5")
        .env("GRPC_BREAKER_OPEN_MS", "500")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start grpc-quotes");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("grpc-quotes exited");
            if let Some(url) = line.strip_prefix("grpc listening on ") {
                return url.to_owned();
            }
        }
    })
    .await
    .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = tonic::client::Grpc::new(channel);
    let get = |api_key: &str, sku: &str| {
        let mut request = tonic::Request::new(json!({ "sku": sku }));
        request
            .metadata_mut()
            .insert("x-api-key", api_key.parse().unwrap());
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary::<Value, Value, _>(
                    request,
                    PathAndQuery::from_static("/quotes.Quotes/Get"),
                    JsonCodec,
                )
                .await
        }
    };

    let quote = get("a", "widget").await.unwrap().into_inner();
    assert_eq!(quote["sku"], "widget");
    assert!(quote["price_cents"].as_u64().unwrap() >= 100);

    // Rate limit: 5 per key, then RESOURCE_EXHAUSTED with a pushback.
    for _ in 0..4 {
        get("a", "widget").await.unwrap();
    }
    let refused = get("a", "widget").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.metadata().contains_key("grpc-retry-pushback-ms"));

    // Breaker: four failures open it; the next call is refused without reaching the service.
    for i in 0..4 {
        let failed = get(&format!("b{i}"), "broken").await.unwrap_err();
        assert_eq!(failed.code(), Code::Unavailable);
        assert!(
            failed.message().contains("pricing database"),
            "{}",
            failed.message()
        );
    }
    let open = get("c", "widget").await.unwrap_err();
    assert_eq!(open.code(), Code::Unavailable);
    assert!(
        !open.message().contains("pricing database"),
        "refused by the breaker: {}",
        open.message()
    );
    assert!(open.metadata().contains_key("grpc-retry-pushback-ms"));

    // After the open period a probe succeeds and the breaker closes.
    let mut healed = false;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(&format!("d{i}"), "widget").await.is_ok() {
            healed = true;
            break;
        }
    }
    assert!(healed);
    let _ = child.start_kill();
}
