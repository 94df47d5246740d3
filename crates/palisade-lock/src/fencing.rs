//! Fencing: resources that refuse writes from a lock holder that lost the lock.
//!
//! A lock holder can be paused (GC, SIGSTOP, a VM migration) past its lease, wake up, and
//! write as if it still held the lock — after the lock went to someone else. No lock service
//! can stop that; the **resource** can, if every write carries the holder's fencing token
//! ([`LockGuard::fencing_token`](crate::LockGuard::fencing_token)) and the resource accepts a
//! token only if it is higher than every token it accepted before.
//!
//! - PostgreSQL: [`check_fence`] inside the writing transaction; or write the condition into
//!   your own `UPDATE`: `UPDATE accounts SET balance = $1, fence = $2 WHERE id = $3 AND
//!   fence < $2` (0 rows → stale holder).
//! - Redis: [`fenced_set`], a script that stores a value only with a newer token.

#[cfg(feature = "postgres")]
pub use self::postgres::check_fence;
#[cfg(feature = "redis")]
pub use self::redis::fenced_set;

#[cfg(feature = "postgres")]
mod postgres {
    use palisade_core::BackendError;
    use sqlx::PgConnection;

    use crate::LockError;

    /// Records `token` as the newest accepted for `resource` — `Ok(true)` — or refuses it
    /// because an equal or newer token was accepted before — `Ok(false)`: roll back then.
    ///
    /// Run it in the same transaction as the protected write; the row lock it takes on
    /// `palisade_fenced_resources` serialises concurrent writers to the resource until
    /// commit. Needs the table from [`PgAdvisoryLock::migrate`](crate::PgAdvisoryLock::migrate).
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool, token: u64) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// if palisade_lock::fencing::check_fence(&mut tx, "ledger:order-123", token).await? {
    ///     sqlx::query("INSERT INTO ledger (order_id, cents) VALUES ('order-123', 500)")
    ///         .execute(&mut *tx)
    ///         .await?;
    ///     tx.commit().await?;
    /// } // else: a newer holder exists; drop `tx` to roll back
    /// # Ok(()) }
    /// ```
    pub async fn check_fence(
        conn: &mut PgConnection,
        resource: &str,
        token: u64,
    ) -> Result<bool, LockError> {
        let token = i64::try_from(token).unwrap_or(i64::MAX);
        let accepted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO palisade_fenced_resources (resource, fence) VALUES ($1, $2) \
             ON CONFLICT (resource) DO UPDATE SET fence = EXCLUDED.fence \
             WHERE palisade_fenced_resources.fence < EXCLUDED.fence \
             RETURNING fence",
        )
        .bind(resource)
        .bind(token)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| LockError::Backend(BackendError::Unavailable(e.to_string())))?;
        Ok(accepted.is_some())
    }
}

#[cfg(feature = "redis")]
mod redis {
    use std::sync::LazyLock;

    use palisade_core::redis::{Arg, OWNERSHIP_TIMEOUT, RedisClient, RedisScript};

    use crate::LockError;

    static FENCED_SET: LazyLock<RedisScript> =
        LazyLock::new(|| RedisScript::new(include_str!("scripts/fenced_set.lua")));

    /// Stores `value` in the hash `key` (fields `value` and `fence`) only if `token` is
    /// greater than the token of the last accepted write: `Ok(true)` if written, `Ok(false)`
    /// if refused as stale. One atomic script call.
    pub async fn fenced_set<C: RedisClient>(
        client: &C,
        key: &str,
        value: &[u8],
        token: u64,
    ) -> Result<bool, LockError> {
        let args = [
            Arg::from(value),
            Arg::Int(i64::try_from(token).unwrap_or(i64::MAX)),
        ];
        let written: i64 = FENCED_SET
            .invoke(client, &[key.to_owned()], &args, OWNERSHIP_TIMEOUT)
            .await?;
        Ok(written == 1)
    }
}
