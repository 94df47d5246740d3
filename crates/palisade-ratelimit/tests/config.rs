//! Policies from TOML: humane durations, validation with clear errors.

use std::{collections::HashMap, time::Duration};

use palisade_core::OnBackendError;
use palisade_ratelimit::{Algorithm, Policy};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    policies: HashMap<String, Policy>,
}

#[test]
fn tiers_load_from_toml() {
    let config: Config = toml::from_str(
        r#"
        [policies.anonymous]
        name = "anonymous"
        [[policies.anonymous.limits]]
        name = "per-minute"
        algorithm = "gcra"
        quota = 10
        window = "1m"
        burst = 5

        [policies.pro]
        name = "pro"
        on_backend_error = "fail_closed"
        [[policies.pro.limits]]
        name = "burst"
        algorithm = "token_bucket"
        capacity = 100
        refill_per_second = 16.5
        [[policies.pro.limits]]
        name = "daily"
        algorithm = "sliding_window_log"
        quota = 10000
        window = "1day"
        "#,
    )
    .unwrap();
    let anonymous = &config.policies["anonymous"];
    assert_eq!(anonymous.on_backend_error(), OnBackendError::FailOpen);
    match anonymous.limits()[0].algorithm() {
        Algorithm::Gcra(g) => {
            assert_eq!((g.quota(), g.burst()), (10, 5));
            assert_eq!(g.window(), Duration::from_secs(60).as_micros() as u64);
        }
        other => panic!("{other:?}"),
    }
    let pro = &config.policies["pro"];
    assert_eq!(pro.on_backend_error(), OnBackendError::FailClosed);
    assert_eq!(
        pro.header_value(),
        "\"burst\";q=100;w=7, \"daily\";q=10000;w=86400"
    );
}

fn error_of(toml_text: &str) -> String {
    match toml::from_str::<Policy>(toml_text) {
        Ok(p) => panic!("accepted {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_policies_say_what_to_fix() {
    let e = error_of(
        r#"
        name = "api"
        [[limits]]
        name = "x"
        algorithm = "token_bucket"
        capacity = 0
        refill_per_second = 1
        "#,
    );
    assert!(
        e.contains("policy `api`") && e.contains("capacity must be"),
        "{e}"
    );

    let e = error_of(
        r#"
        name = "api"
        [[limits]]
        name = "x"
        algorithm = "fixed_window"
        quota = 5
        window = "soon"
        "#,
    );
    assert!(e.contains("\"soon\", expected a duration"), "{e}");

    let e = error_of(
        r#"
        name = "api"
        [[limits]]
        name = "x"
        algorithm = "leaky_bucket"
        "#,
    );
    assert!(e.contains("leaky_bucket"), "{e}");

    let e = error_of(
        r#"name = "api"
limits = []"#,
    );
    assert!(e.contains("needs 1..=4 limits"), "{e}");

    let e = error_of(
        r#"
        name = "bad name"
        [[limits]]
        name = "x"
        algorithm = "gcra"
        quota = 5
        window = "1s"
        "#,
    );
    assert!(e.contains("policy name `bad name`"), "{e}");

    let e = error_of(
        r#"
        name = "api"
        [[limits]]
        name = "x"
        algorithm = "gcra"
        quota = 5
        window = "1s"
        [[limits]]
        name = "x"
        algorithm = "gcra"
        quota = 5
        window = "1m"
        "#,
    );
    assert!(e.contains("two limits named `x`"), "{e}");

    let e = error_of(
        r#"
        name = "api"
        [[limits]]
        name = "x"
        algorithm = "gcra"
        quota = 5
        window = "1s"
        typo = 1
        "#,
    );
    assert!(e.contains("typo"), "{e}");
}
