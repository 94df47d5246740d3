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

/// One running example binary; killed on drop.
pub struct Instance {
    pub base: String,
    /// Every URL it announced (`<name> listening on …`, `<name> admin on …`), in order.
    pub announced: Vec<String>,
    child: Child,
}

/// The variables that select the payments service's backends and limits: cleared, so a test
/// runs only with what it sets.
const PAYMENTS_ENV: [&str; 15] = [
    "REDIS_URL",
    "DATABASE_URL",
    "PAYMENTS_CONFIG",
    "PAYMENTS_RATE_CAPACITY",
    "PAYMENTS_RATE_REFILL_PER_SEC",
    "PAYMENTS_IP_RATE_CAPACITY",
    "PAYMENTS_IP_RATE_REFILL_PER_SEC",
    "PAYMENTS_IDEMPOTENCY_LEASE",
    "PAYMENTS_REQUEST_BUDGET",
    "PAYMENTS_TRUSTED_PROXIES",
    "PAYMENTS_CLIENT_IP_HEADER",
    "PAYMENTS_API_KEYS",
    "PAYMENTS_HEADER_TIMEOUT",
    "PAYMENTS_BODY_TIMEOUT",
    "PAYMENTS_MAX_CONNECTIONS",
];

impl Instance {
    /// Starts the payments binary with `env` (and nothing inherited that selects backends)
    /// and waits until it listens.
    pub async fn start(env: &[(&str, String)]) -> Instance {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "PAYMENTS_ADDR") {
            env.push(("PAYMENTS_ADDR", "127.0.0.1:0".into()));
        }
        Self::spawn(
            env!("CARGO_BIN_EXE_payments"),
            &["payments listening on "],
            &PAYMENTS_ENV,
            &env,
        )
        .await
    }

    /// Starts `binary` with `env` (`cleared` removed from what it inherits) and waits until
    /// it has printed a line starting with each of `announcements`, in order; the first is
    /// its base URL.
    pub async fn spawn(
        binary: &str,
        announcements: &[&str],
        cleared: &[&str],
        env: &[(&str, String)],
    ) -> Instance {
        let mut command = Command::new(binary);
        for name in cleared {
            command.env_remove(name);
        }
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let announced = tokio::time::timeout(Duration::from_secs(20), async {
            let mut announced = Vec::new();
            while announced.len() < announcements.len() {
                let Some(line) = lines.next_line().await.expect("read stdout") else {
                    panic!("{binary} exited before announcing {announcements:?}");
                };
                if let Some(url) = line.strip_prefix(announcements[announced.len()]) {
                    announced.push(url.to_owned());
                }
            }
            announced
        })
        .await
        .unwrap_or_else(|_| panic!("{binary} announces {announcements:?} within 20 s"));
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Instance {
            base: announced[0].clone(),
            announced,
            child,
        }
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
