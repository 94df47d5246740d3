//! Settings from the environment.

use std::net::SocketAddr;

use palisade::outbox::Schema;

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API, relay and projector in one process.
    All,
    /// The HTTP API only (writes orders and their events).
    Api,
    /// The outbox relay only.
    Relay,
    /// The read-model projector only.
    Projector,
}

impl Role {
    pub fn api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn relay(self) -> bool {
        matches!(self, Role::All | Role::Relay)
    }

    pub fn projector(self) -> bool {
        matches!(self, Role::All | Role::Projector)
    }
}

/// Where the relay publishes and the projector reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// NATS JetStream at this URL.
    Nats(String),
    /// Redis Streams at this URL.
    Redis(String),
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub sink: SinkKind,
    pub addr: SocketAddr,
    /// Whether `ORDERS_ADDR` was given (a relay or projector without one falls back to a free
    /// port when the default is taken by an API instance).
    pub addr_given: bool,
    pub schema: Schema,
    /// The JetStream stream name, or the Redis stream key.
    pub stream: String,
    pub subject: String,
    pub role: Role,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A subject token or JetStream name: no whitespace, `.`, `*`, `>`, and not empty.
fn plain_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>'))
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let database_url = var("DATABASE_URL").ok_or("DATABASE_URL is required")?;
        let sink = match var("ORDERS_SINK").as_deref().unwrap_or("nats") {
            "nats" => SinkKind::Nats(
                var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            ),
            "redis" => {
                SinkKind::Redis(var("REDIS_URL").ok_or("ORDERS_SINK=redis needs REDIS_URL")?)
            }
            other => return Err(format!("ORDERS_SINK={other}: use nats or redis")),
        };
        let addr_text = var("ORDERS_ADDR");
        let addr = addr_text
            .as_deref()
            .unwrap_or("127.0.0.1:3100")
            .parse()
            .map_err(|e| format!("ORDERS_ADDR: {e}"))?;
        let schema_name = var("ORDERS_SCHEMA").unwrap_or_else(|| "palisade_orders".to_owned());
        let schema = Schema::new(&schema_name).map_err(|e| format!("ORDERS_SCHEMA: {e}"))?;
        let stream = var("ORDERS_STREAM").unwrap_or_else(|| "ORDERS".to_owned());
        if !plain_token(&stream) {
            return Err(format!(
                "ORDERS_STREAM={stream:?}: no whitespace, '.', '*' or '>'"
            ));
        }
        let subject = var("ORDERS_SUBJECT").unwrap_or_else(|| "orders".to_owned());
        if !subject.split('.').all(plain_token) {
            return Err(format!(
                "ORDERS_SUBJECT={subject:?}: dot-separated tokens without whitespace, '*' or '>'"
            ));
        }
        let role = match var("ORDERS_ROLE").as_deref().unwrap_or("all") {
            "all" => Role::All,
            "api" => Role::Api,
            "relay" => Role::Relay,
            "projector" => Role::Projector,
            other => {
                return Err(format!(
                    "ORDERS_ROLE={other}: use all, api, relay or projector"
                ));
            }
        };
        Ok(Settings {
            database_url,
            sink,
            addr,
            addr_given: addr_text.is_some(),
            schema,
            stream,
            subject,
            role,
        })
    }
}
