//! [`Schema`]: the PostgreSQL schema the outbox tables live in, and their migrations.

use std::fmt;

use sqlx::{Executor, PgPool};

use crate::error::OutboxError;

/// The migrations, in order; `{schema}` stands for the schema's name.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_outbox.sql")];

/// A validated PostgreSQL schema name: the outbox, its sequences, dead letters and the inbox's
/// `processed_messages` live there.
///
/// Names are 1–56 characters of `a-z`, `0-9` and `_`, not starting with a digit or `pg_`
/// (reserved by PostgreSQL); 56 leaves room for the `LISTEN` channel `<name>_outbox` within
/// PostgreSQL's 63. They are always written double-quoted into SQL (identifiers cannot be
/// bound as parameters), so reserved words such as `order` work too.
///
/// ```
/// use palisade_outbox::Schema;
///
/// assert_eq!(Schema::new("palisade_orders").unwrap().name(), "palisade_orders");
/// assert!(Schema::new("orders; DROP TABLE x").is_err());
/// assert!(Schema::new("Orders").is_err());
/// assert_eq!(Schema::new("order").unwrap().table("outbox"), "\"order\".outbox");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Schema {
    name: String,
}

impl Schema {
    /// The schema `name`, or [`OutboxError::InvalidSchema`].
    pub fn new(name: &str) -> Result<Schema, OutboxError> {
        let valid = (1..=56).contains(&name.len())
            && !name.starts_with("pg_")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if valid {
            Ok(Schema {
                name: name.to_owned(),
            })
        } else {
            Err(OutboxError::InvalidSchema(name.to_owned()))
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `schema.table`: the qualified name of `table` in this schema.
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.name)
    }

    /// The `LISTEN`/`NOTIFY` channel writers wake relays on.
    pub(crate) fn channel(&self) -> String {
        format!("{}_outbox", self.name)
    }

    /// Creates the schema and its tables if they are missing (idempotent; safe when several
    /// instances start at once: the migration runs under a transaction-scoped advisory lock).
    pub async fn migrate(&self, pool: &PgPool) -> Result<(), OutboxError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("palisade-outbox:{}", self.name))
            .execute(&mut *tx)
            .await?;
        for migration in MIGRATIONS {
            tx.execute(migration.replace("{schema}", &self.to_string()).as_str())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schema").field(&self.name).finish()
    }
}

/// The name as SQL writes it: double-quoted (`"shop"`), for `format!("{schema}.orders")`.
impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_pass() {
        for good in ["a", "palisade_orders", "_x1", "order", &"a".repeat(56)] {
            assert!(Schema::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Orders",
            "a-b",
            "a.b",
            "a b",
            "x\"; drop",
            "é",
            &"a".repeat(57),
            "pg_catalog",
        ] {
            assert!(Schema::new(bad).is_err(), "{bad}");
        }
    }
}
