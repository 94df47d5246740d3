//! The scripted origin and request helpers every cache test uses.
#![allow(dead_code)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use palisade_cache::{Caching, Store};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What the origin answers next, and what it saw.
#[derive(Default)]
pub struct Script {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
    /// Answer `Err` instead (a transport failure).
    fail: bool,
    seen: Vec<HeaderMap>,
}

#[derive(Clone)]
pub struct Origin {
    script: Arc<Mutex<Script>>,
    calls: Arc<AtomicUsize>,
    /// When set, every call waits for a permit first.
    gate: Option<Arc<Semaphore>>,
}

impl Origin {
    pub fn new(status: u16, headers: &[(&'static str, &str)], body: &'static str) -> Self {
        let origin = Origin {
            script: Arc::default(),
            calls: Arc::default(),
            gate: None,
        };
        origin.answer(status, headers, body);
        origin
    }

    pub fn answer(&self, status: u16, headers: &[(&'static str, &str)], body: &'static str) {
        let mut script = self.script.lock().unwrap();
        script.status = status;
        script.headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        script.body = body;
        script.fail = false;
    }

    pub fn fail(&self) {
        self.script.lock().unwrap().fail = true;
    }

    pub fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        self.gate = Some(gate.clone());
        (self, gate)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> HeaderMap {
        self.script.lock().unwrap().seen.last().cloned().unwrap()
    }
}

#[derive(Debug)]
pub struct OriginDown;

impl std::fmt::Display for OriginDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("origin down")
    }
}

impl std::error::Error for OriginDown {}

impl tower::Service<Request<Full<Bytes>>> for Origin {
    type Response = Response<Full<Bytes>>;
    type Error = OriginDown;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Full<Bytes>>, OriginDown>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OriginDown>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let origin = self.clone();
        Box::pin(async move {
            origin.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &origin.gate {
                gate.acquire().await.unwrap().forget();
            }
            let mut script = origin.script.lock().unwrap();
            script.seen.push(request.headers().clone());
            if script.fail {
                return Err(OriginDown);
            }
            let mut response = Response::new(Full::new(Bytes::from_static(script.body.as_bytes())));
            *response.status_mut() = StatusCode::from_u16(script.status).unwrap();
            for (k, v) in &script.headers {
                response.headers_mut().append(*k, v.parse().unwrap());
            }
            if !response.headers().contains_key("date") {
                let now = httpdate::fmt_http_date(SystemTime::now());
                response.headers_mut().insert("date", now.parse().unwrap());
            }
            Ok(response)
        })
    }
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://example.com{path}"))
        .body(Full::default())
        .unwrap()
}

pub async fn send<St: Store>(
    svc: &Caching<Origin, St>,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Bytes) {
    let response = svc.clone().oneshot(request).await.expect("no origin error");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

pub fn cache_status(headers: &HeaderMap) -> String {
    headers["cache-status"].to_str().unwrap().to_owned()
}

/// Lets every spawned task run until it blocks (paused time: no timer fires meanwhile).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}
