//! PostgreSQL advisory locks: [`PgAdvisoryLock`] (session level, a guard owning its
//! connection) and the transaction-level functions.

use std::{future::Future, sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Row, pool::PoolConnection};
use tokio::{sync::Mutex, time::Instant};

use crate::{
    LockError, LockGuard, Locker,
    error::check_name,
    guard::{Held, HeldFuture},
};
use palisade_core::BackendError;

/// The default deadline of one lock statement (see
/// [`PgAdvisoryLock::with_statement_timeout`]).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The shipped migration: fencing counters and fenced resources.
pub const MIGRATION: &str = include_str!("../../migrations/0001_palisade_lock_fences.sql");

/// The key of an advisory lock.
///
/// PostgreSQL advisory locks are keyed by one 64-bit integer or by two 32-bit integers (two
/// different key spaces). [`AdvisoryKey::named`] derives the 64-bit form from a **stable**
/// hash — the first 8 bytes of SHA-256 over `namespace`, a NUL and `name` — so every process,
/// every language and every release computes the same key for the same name (never Rust's
/// `DefaultHasher`, whose output may change between releases). Collisions are possible in
/// principle (two names sharing a key exclude each other, never the reverse) and negligible in
/// practice (birthday bound: about 1 in 10⁹ at 190 000 live names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdvisoryKey {
    /// `pg_advisory_lock(bigint)`.
    Single(i64),
    /// `pg_advisory_lock(int, int)`: a namespace (e.g. one per table or subsystem) and an id
    /// within it.
    Pair(i32, i32),
}

impl AdvisoryKey {
    /// The 64-bit key of `name` in `namespace`.
    pub fn named(namespace: &str, name: &str) -> AdvisoryKey {
        let mut hash = Sha256::new();
        hash.update(namespace.as_bytes());
        hash.update([0]);
        hash.update(name.as_bytes());
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        AdvisoryKey::Single(i64::from_be_bytes(first))
    }

    fn sql(self, function: &str) -> (String, i64, i64) {
        match self {
            AdvisoryKey::Single(k) => (format!("SELECT {function}($1)"), k, 0),
            AdvisoryKey::Pair(a, b) => (
                format!("SELECT {function}($1::int, $2::int)"),
                i64::from(a),
                i64::from(b),
            ),
        }
    }
}

async fn call_bool(
    conn: &mut PgConnection,
    key: AdvisoryKey,
    function: &str,
) -> Result<bool, sqlx::Error> {
    let (sql, a, b) = key.sql(function);
    let query = sqlx::query(&sql).bind(a);
    let query = match key {
        AdvisoryKey::Pair(..) => query.bind(b),
        AdvisoryKey::Single(_) => query,
    };
    let row = query.fetch_one(&mut *conn).await?;
    // pg_advisory_lock returns void; the try/unlock forms return a boolean.
    Ok(row.try_get::<bool, _>(0).unwrap_or(true))
}

fn backend(error: sqlx::Error) -> LockError {
    match error {
        sqlx::Error::Database(db) => LockError::Backend(BackendError::Protocol(db.to_string())),
        other => LockError::Backend(BackendError::Unavailable(other.to_string())),
    }
}

/// Takes a **transaction-level** advisory lock on the caller's transaction (or connection),
/// waiting at most `wait` (`SET LOCAL lock_timeout`): `Ok(false)` if it is still held by
/// someone else then. The lock is released at `COMMIT` or `ROLLBACK` — there is nothing to
/// release by hand. Must run inside a transaction (on a bare connection it would end with the
/// implicit single-statement transaction at once).
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use palisade_lock::{AdvisoryKey, lock_xact};
///
/// let mut tx = pool.begin().await?;
/// if lock_xact(&mut tx, AdvisoryKey::named("orders", "order-123"), Duration::from_secs(1)).await? {
///     // ... writes that must not interleave with another transaction's ...
/// }
/// tx.commit().await?; // releases the lock
/// # Ok(()) }
/// ```
pub async fn lock_xact(
    conn: &mut PgConnection,
    key: AdvisoryKey,
    wait: Duration,
) -> Result<bool, LockError> {
    let set = format!("SET LOCAL lock_timeout = {}", wait.as_millis().max(1));
    sqlx::query(&set)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    match call_bool(conn, key, "pg_advisory_xact_lock").await {
        Ok(_) => {
            sqlx::query("SET LOCAL lock_timeout = 0")
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(true)
        }
        // 55P03 lock_not_available: the wait ran out. The transaction is now aborted, as
        // after any error; the caller rolls it back.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => Ok(false),
        Err(error) => Err(backend(error)),
    }
}

/// Tries a transaction-level advisory lock without waiting.
pub async fn try_lock_xact(conn: &mut PgConnection, key: AdvisoryKey) -> Result<bool, LockError> {
    call_bool(conn, key, "pg_try_advisory_xact_lock")
        .await
        .map_err(backend)
}

/// An advisory lock someone holds (or waits for), from `pg_locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAdvisoryLock {
    /// The holder's (or waiter's) backend process id.
    pub pid: i32,
    /// The lock's key.
    pub key: AdvisoryKey,
    /// `true` if held, `false` if waiting.
    pub granted: bool,
    /// `ExclusiveLock` or `ShareLock`.
    pub mode: String,
}

/// Lists the advisory locks held or awaited in the current database.
pub async fn held_advisory_locks(pool: &PgPool) -> Result<Vec<HeldAdvisoryLock>, LockError> {
    let rows = sqlx::query(
        "SELECT pid, classid::bigint AS classid, objid::bigint AS objid, objsubid::int AS objsubid, \
                granted, mode \
         FROM pg_locks WHERE locktype = 'advisory' AND database = \
           (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let classid: i64 = row.try_get("classid").map_err(backend)?;
        let objid: i64 = row.try_get("objid").map_err(backend)?;
        let objsubid: i32 = row.try_get("objsubid").map_err(backend)?;
        // objsubid 1: a bigint key split into (high, low) 32 bits; 2: the (int, int) form.
        let key = if objsubid == 1 {
            AdvisoryKey::Single(((classid as u64) << 32 | (objid as u64 & 0xffff_ffff)) as i64)
        } else {
            AdvisoryKey::Pair(classid as u32 as i32, objid as u32 as i32)
        };
        out.push(HeldAdvisoryLock {
            pid: row.try_get("pid").map_err(backend)?,
            key,
            granted: row.try_get("granted").map_err(backend)?,
            mode: row.try_get("mode").map_err(backend)?,
        });
    }
    Ok(out)
}

/// Session-level advisory locks: each guard **owns a pooled connection** for as long as it
/// holds the lock, since a session lock belongs to its connection.
///
/// Released with [`LockGuard::release`], the lock is unlocked and the connection goes back to
/// the pool. A guard dropped without release **closes** its connection instead (the server
/// then drops the lock), so the pool never hands out a connection that still holds a lock.
/// The watchdog pings the connection every TTL/3; if the connection dies (server restart,
/// `pg_terminate_backend`, network) or a ping misses its deadline (a black-holed connection:
/// the server may already have dropped the session and granted the lock to someone else), the
/// connection is closed and the guard is lost. Every statement has a deadline
/// ([`with_statement_timeout`](Self::with_statement_timeout)), and a connection whose
/// acquisition did not complete — a waiter cancelled while PostgreSQL queues it, a failed
/// `lock_timeout` reset, a missed deadline — is closed, never returned to the pool, since the
/// server could grant it the lock a moment later.
///
/// With [`with_fencing`](Self::with_fencing), every acquisition also increments the name's
/// counter in `palisade_lock_fences` (same session, while holding the lock), giving strictly
/// increasing fencing tokens; run [`migrate`](Self::migrate) once.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), palisade_lock::LockError> {
/// use std::time::Duration;
/// use palisade_lock::{Locker, PgAdvisoryLock};
///
/// let locks = PgAdvisoryLock::new(pool, "payments");
/// let guard = locks.acquire("order-123", Duration::from_secs(2)).await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgAdvisoryLock {
    pool: PgPool,
    namespace: Arc<str>,
    ping_every: Duration,
    statement_timeout: Duration,
    fencing: bool,
}

impl PgAdvisoryLock {
    /// Locks on `pool`; names are keyed with [`AdvisoryKey::named`]`(namespace, name)`.
    pub fn new(pool: PgPool, namespace: &str) -> Self {
        PgAdvisoryLock {
            pool,
            namespace: namespace.into(),
            ping_every: Duration::from_secs(3),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            fencing: false,
        }
    }

    /// Issues fencing tokens from `palisade_lock_fences` (run [`migrate`](Self::migrate)).
    ///
    /// A token is `max(last token + 1, the server's clock in µs)`, as on Redis: strictly
    /// increasing per name, and still above every earlier one after its row is gone — so rows
    /// of names no longer locked may be deleted at any time (`DELETE FROM palisade_lock_fences
    /// WHERE …`); nothing grows without bound with per-order lock names.
    pub fn with_fencing(mut self) -> Self {
        self.fencing = true;
        self
    }

    /// How often the watchdog checks the connection (default every 3 s; it acts as a TTL of
    /// three times this).
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self
    }

    /// Creates the fencing tables if they do not exist.
    pub async fn migrate(&self) -> Result<(), LockError> {
        sqlx::raw_sql(MIGRATION)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    /// The advisory key of lock `name`.
    pub fn key(&self, name: &str) -> AdvisoryKey {
        AdvisoryKey::named(&self.namespace, name)
    }

    /// The deadline of each statement (default 1 s, never more than the ping interval).
    ///
    /// A statement that misses it — a black-holed connection, a stalled server — closes its
    /// connection (the server then drops the session and its locks) rather than returning it
    /// to the pool, and a held lock whose ping misses it is **lost**. Waiting in
    /// [`acquire`](Locker::acquire) gets the wait on top of this.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    fn deadline(&self) -> Duration {
        self.statement_timeout.min(self.ping_every)
    }

    async fn take(
        &self,
        name: &str,
        wait: Option<Duration>,
    ) -> Result<Option<LockGuard>, LockError> {
        check_name(name)?;
        let key = self.key(name);
        let deadline = self.deadline();
        let sent_at = Instant::now();
        let conn = bounded(deadline, self.pool.acquire()).await?;
        // Until the acquisition completes, the connection is tainted: if this future is
        // dropped (a cancelled waiter) or a statement fails or times out, it is closed, never
        // pooled — PostgreSQL may grant the queued lock to it a moment later.
        let mut conn = Tainted::new(conn);
        let got = match wait {
            None => bounded(deadline, call_bool(conn.get(), key, "pg_try_advisory_lock")).await?,
            Some(wait) => {
                let set = format!("SET lock_timeout = {}", wait.as_millis().max(1));
                bounded(deadline, sqlx::query(&set).execute(&mut **conn.get())).await?;
                let got = match tokio::time::timeout(
                    wait + deadline,
                    call_bool(conn.get(), key, "pg_advisory_lock"),
                )
                .await
                {
                    Ok(Ok(_)) => true,
                    Ok(Err(sqlx::Error::Database(db))) if db.code().as_deref() == Some("55P03") => {
                        false
                    }
                    Ok(Err(error)) => return Err(backend(error)),
                    Err(_) => {
                        return Err(LockError::Backend(BackendError::Timeout(wait + deadline)));
                    }
                };
                bounded(
                    deadline,
                    sqlx::query("SET lock_timeout = 0").execute(&mut **conn.get()),
                )
                .await?;
                got
            }
        };
        if !got {
            // Clean: no lock, lock_timeout reset. The connection may go back to the pool.
            drop(conn.into_clean());
            return Ok(None);
        }
        let held = Arc::new(PgHeld {
            conn: Mutex::new(Some(conn.into_clean())),
            key,
            deadline,
        });
        let fence = if self.fencing {
            let mut slot = held.conn.lock().await;
            let conn = slot
                .as_mut()
                .ok_or_else(|| LockError::Lost(name.to_owned()))?;
            // On failure `held` is dropped with its connection detached (closed).
            let fence: i64 = bounded(
                deadline,
                sqlx::query_scalar(
                    "INSERT INTO palisade_lock_fences (name, fence) \
                     VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) \
                     ON CONFLICT (name) DO UPDATE SET fence = GREATEST( \
                       palisade_lock_fences.fence + 1, \
                       (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) \
                     RETURNING fence",
                )
                .bind(format!("{}:{name}", self.namespace))
                .fetch_one(&mut **conn),
            )
            .await?;
            Some(fence as u64)
        } else {
            None
        };
        Ok(Some(LockGuard::new(
            name,
            fence,
            self.ping_every * 3,
            sent_at,
            true,
            held,
        )))
    }
}

/// Runs one statement within `deadline`; a miss is a [`BackendError::Timeout`].
async fn bounded<T>(
    deadline: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, LockError> {
    match tokio::time::timeout(deadline, statement).await {
        Ok(result) => result.map_err(backend),
        Err(_) => Err(LockError::Backend(BackendError::Timeout(deadline))),
    }
}

/// A pooled connection in the middle of an acquisition: closed on drop unless declared clean.
struct Tainted(Option<PoolConnection<Postgres>>);

impl Tainted {
    fn new(conn: PoolConnection<Postgres>) -> Self {
        Tainted(Some(conn))
    }

    fn get(&mut self) -> &mut PoolConnection<Postgres> {
        // Present until `into_clean` consumes `self`.
        self.0
            .as_mut()
            .expect("connection present until into_clean")
    }

    fn into_clean(mut self) -> PoolConnection<Postgres> {
        self.0.take().expect("connection present until into_clean")
    }
}

impl Drop for Tainted {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // Detached: dropped outside the pool, which closes the socket and so the session.
            drop(conn.detach());
        }
    }
}

struct PgHeld {
    conn: Mutex<Option<PoolConnection<Postgres>>>,
    key: AdvisoryKey,
    deadline: Duration,
}

impl Held for PgHeld {
    fn extend(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let Some(conn) = slot.as_mut() else {
                return Ok(false);
            };
            match tokio::time::timeout(self.deadline, sqlx::query("SELECT 1").execute(&mut **conn))
                .await
            {
                Ok(Ok(_)) => Ok(true),
                // The session is gone, and its locks with it — or it did not answer in time,
                // and then we cannot know it still holds the lock: close it, and it surely
                // does not.
                Ok(Err(_)) | Err(_) => {
                    if let Some(conn) = slot.take() {
                        drop(conn.detach());
                    }
                    Ok(false)
                }
            }
        })
    }

    fn release(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let Some(conn) = slot.take() else {
                return Ok(false);
            };
            let mut conn = Tainted::new(conn);
            // Unlocked: the connection is clean and goes back to the pool. Otherwise (an error,
            // a missed deadline, this future dropped) it is closed, which ends the lock too.
            let released = bounded(
                self.deadline,
                call_bool(conn.get(), self.key, "pg_advisory_unlock"),
            )
            .await?;
            drop(conn.into_clean());
            Ok(released)
        })
    }
}

impl Drop for PgHeld {
    fn drop(&mut self) {
        // Never released: close the session rather than pool a connection holding the lock.
        if let Some(conn) = self.conn.get_mut().take() {
            drop(conn.detach());
        }
    }
}

impl Locker for PgAdvisoryLock {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        self.take(name, None).await
    }

    /// Waits in PostgreSQL's own lock queue (`lock_timeout`), first come first served,
    /// instead of polling.
    async fn acquire(&self, name: &str, wait: Duration) -> Result<LockGuard, LockError> {
        match self.take(name, Some(wait)).await? {
            Some(guard) => Ok(guard),
            None => Err(LockError::Busy {
                name: name.to_owned(),
                waited: wait,
            }),
        }
    }
}
