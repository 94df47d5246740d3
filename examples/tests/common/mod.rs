//! Starting the payments binary and talking HTTP to it.
#![allow(dead_code)]

use std::{process::Stdio, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// One running `payments` process; killed on drop.
pub struct Instance {
    pub base: String,
    child: Child,
}

impl Instance {
    /// Starts the binary with `env` (and nothing inherited that selects backends) and waits
    /// until it listens.
    pub async fn start(env: &[(&str, String)]) -> Instance {
        let mut command = Command::new(env!("CARGO_BIN_EXE_payments"));
        command
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_CONFIG")
            .env_remove("PAYMENTS_RATE_CAPACITY")
            .env_remove("PAYMENTS_RATE_REFILL_PER_SEC")
            .env_remove("PAYMENTS_IP_RATE_CAPACITY")
            .env_remove("PAYMENTS_IP_RATE_REFILL_PER_SEC")
            .env_remove("PAYMENTS_IDEMPOTENCY_LEASE")
            .env_remove("PAYMENTS_REQUEST_BUDGET")
            .env_remove("PAYMENTS_TRUSTED_PROXIES")
            .env_remove("PAYMENTS_CLIENT_IP_HEADER")
            .env_remove("PAYMENTS_API_KEYS")
            .env_remove("PAYMENTS_HEADER_TIMEOUT")
            .env_remove("PAYMENTS_BODY_TIMEOUT")
            .env_remove("PAYMENTS_MAX_CONNECTIONS")
            .env("PAYMENTS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the payments binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("payments listening on ") {
                    return url.to_owned();
                }
            }
            panic!("payments exited before listening");
        })
        .await
        .expect("payments listens within 20 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Instance { base, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an RFC 9457 body with the four members the contract requires.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let json = self.json();
        assert_eq!(json["status"], status);
        for member in ["type", "title", "detail"] {
            assert!(json[member].is_string(), "problem without {member}: {json}");
        }
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = client().request(request).await.expect("HTTP request");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// `POST /orders/{order}/payments` with the usual headers.
pub async fn pay(
    base: &Instance,
    order: &str,
    api_key: &str,
    idem: &str,
    body: &str,
    work_ms: u64,
) -> Reply {
    let url = base.url(&format!("/orders/{order}/payments?work_ms={work_ms}"));
    send(
        Method::POST,
        &url,
        &[
            ("x-api-key", api_key),
            ("idempotency-key", idem),
            ("content-type", "application/json"),
        ],
        body.to_owned(),
    )
    .await
}

pub async fn charges(base: &Instance, order: &str) -> serde_json::Value {
    send(
        Method::GET,
        &base.url(&format!("/orders/{order}/charges")),
        &[],
        "",
    )
    .await
    .json()
}

pub fn unique(name: &str) -> String {
    palisade_testkit::unique_prefix(name)
}
