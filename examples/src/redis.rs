//! The Redis client the example binaries share.

use std::time::Duration;

use fred::{
    interfaces::ClientLike,
    types::{
        Builder,
        config::{Config, ReconnectPolicy},
    },
};

/// A client that reconnects on its own (every 100 ms) and never waits long for an answer: the
/// layers' own timeouts decide, and Redis returning is picked up without a restart.
pub async fn connect(url: &str, program: &str) -> fred::clients::Client {
    let mut config = Config::from_url(url).unwrap_or_else(|e| {
        eprintln!("{program}: REDIS_URL={url}: {e}");
        std::process::exit(2);
    });
    // Retry the first connection too: an instance started while Redis is down answers 503
    // (fail closed) and recovers when Redis comes up, without a restart.
    config.fail_fast = false;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_millis(500);
            c.internal_command_timeout = Duration::from_millis(500);
            c.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("{program}: REDIS_URL={url}: {e}");
            std::process::exit(2);
        });
    match tokio::time::timeout(Duration::from_secs(5), client.init()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Redis unreachable at start; retrying in the background")
        }
        Err(_) => tracing::warn!("Redis did not answer within 5 s; retrying in the background"),
    }
    client
}
