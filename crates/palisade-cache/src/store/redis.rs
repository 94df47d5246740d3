//! [`RedisStore`]: responses shared by a fleet on Redis — storage, exact fleet-wide purges,
//! and fetch claims for coalescing across instances.

use std::{
    collections::BTreeSet,
    fmt,
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use palisade_core::{
    BackendError,
    backend::{Undo, compensation_timeout},
    key::digest_hex,
    redis::{Arg, RedisBackend, RedisClient, RedisScript, Reply},
};

use super::{MAX_VARIANTS, PurgeMode, Store, codec};
use crate::{Entry, policy::PolicyConfig};

static PUT: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/put.lua")));
static PURGE_KEY: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/purge_key.lua")));
static BAN: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/ban.lua")));
static RELEASE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/release.lua")));

/// The default bound on one Redis call: 250 ms (bodies of up to a mebibyte travel).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// Responses on Redis, shared by every instance that uses the same Redis and prefix.
///
/// - **Storage**: a URI's variants are one hash, `<prefix>:cache:v:{<uri>}` (selection id →
///   encoded entry), kept while its longest-lived variant may still be used: its remaining
///   freshness, plus its stale-while-revalidate / stale-if-error windows, plus an hour to
///   revalidate it by (at most [`max_retention`](Self::max_retention), default one day).
///   Entries larger than [`max_entry_size`](Self::max_entry_size) (default 1 MiB) are not
///   stored.
/// - **Purges** are exact and fleet-wide when they return: each records a *ban* — "responses
///   requested up to now under this surrogate key (or URL, or all) are purged, hard or soft"
///   (so a fetch in flight during the purge does not bring the old response back) — that every
///   lookup applies with one `MGET` (the bans share one hash slot, so it works on a cluster);
///   a hard purge by URL also deletes the hash. Bans are kept as long as entries can live
///   (entries older than that are ignored). They compare the purging instance's clock with
///   the storing instance's: keep the fleet's clocks in sync (NTP).
/// - **Coalescing** across instances: a claim `<prefix>:cache:fetch:{<uri>}` (`SET NX PX`, an
///   owner token) held by the one instance fetching; the others wait for its response.
///
/// Each lookup costs one round trip for a miss and two for a hit; every call is bounded by
/// the store's timeout, and a failed call makes the cache a pass-through for that request.
///
/// ```no_run
/// # async fn demo(client: fred::clients::Client) {
/// use palisade_cache::{HttpCache, store::RedisStore};
///
/// let cache = HttpCache::new(RedisStore::new(client).with_prefix("edge"));
/// # let _ = cache; }
/// ```
pub struct RedisStore<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    backend: RedisBackend<C>,
    max_entry_bytes: usize,
    max_retention: Duration,
}

impl<C> Clone for RedisStore<C> {
    fn clone(&self) -> Self {
        RedisStore {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.backend.keys().prefix())
            .field("max_entry_bytes", &self.inner.max_entry_bytes)
            .finish_non_exhaustive()
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long a revalidatable entry is kept past its stale windows.
const REVALIDATION_GRACE: Duration = Duration::from_secs(3600);

impl<C: RedisClient> RedisStore<C> {
    /// A store on `client` (any [`RedisClient`]), keys under `palisade`.
    pub fn new(client: C) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                backend: RedisBackend::new(client, "cache", DEFAULT_TIMEOUT),
                max_entry_bytes: 1 << 20,
                max_retention: Duration::from_secs(24 * 3600),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Inner<C>)) -> Self {
        let mut inner = Inner {
            backend: self.inner.backend.clone(),
            max_entry_bytes: self.inner.max_entry_bytes,
            max_retention: self.inner.max_retention,
        };
        change(&mut inner);
        RedisStore {
            inner: Arc::new(inner),
        }
    }

    /// Keys under `prefix` (one application, or one test, per prefix).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.with(|i| i.backend = i.backend.clone().with_prefix(prefix))
    }

    /// Bounds every Redis call (default 250 ms).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|i| i.backend = i.backend.clone().with_timeout(timeout))
    }

    /// The largest encoded entry stored (default 1 MiB); larger ones are passed through.
    pub fn max_entry_size(self, bytes: usize) -> Self {
        self.with(|i| i.max_entry_bytes = bytes)
    }

    /// The longest any entry (and any purge record) is kept (default one day).
    pub fn max_retention(self, retention: Duration) -> Self {
        self.with(|i| i.max_retention = retention.max(Duration::from_secs(1)))
    }

    fn variants_key(&self, key: &str) -> String {
        self.inner.backend.key_of_text("v", key)
    }

    fn claim_key(&self, key: &str) -> String {
        self.inner.backend.key_of_text("fetch", key)
    }

    /// A ban record: every one under the same hash tag, so one `MGET` reads them on a cluster.
    fn ban_key(&self, kind: &str, id: &str) -> String {
        format!(
            "{}:cache:bans:{{bans}}:{kind}:{id}",
            self.inner.backend.keys().prefix()
        )
    }

    fn tag_bans(&self, tag: &str) -> [String; 2] {
        let id = digest_hex(tag.as_bytes());
        [self.ban_key("tag-hard", &id), self.ban_key("tag-soft", &id)]
    }

    async fn ban(&self, ban: String, now: SystemTime) -> Result<(), BackendError> {
        let args = [
            Arg::Int(millis(now)),
            Arg::Int(self.inner.max_retention.as_millis() as i64),
        ];
        self.inner.backend.run::<i64>(&BAN, &[ban], &args).await?;
        Ok(())
    }

    /// How long `entry` is kept: while it can still be served or revalidated.
    fn retention(&self, entry: &Entry) -> Duration {
        let view = entry.view();
        let fresh_left = view.lifetime.saturating_sub(view.initial_age);
        let windows = view
            .directives
            .stale_while_revalidate
            .max(view.directives.stale_if_error)
            .unwrap_or(0);
        (fresh_left + Duration::from_secs(windows) + REVALIDATION_GRACE)
            .min(self.inner.max_retention)
    }

    /// The entries with the bans that apply to them applied: hard-purged ones dropped,
    /// soft-purged ones marked stale at the purge time.
    async fn apply_bans(
        &self,
        key: &str,
        entries: Vec<Entry>,
    ) -> Result<Vec<Arc<Entry>>, BackendError> {
        let tags: Vec<String> = entries
            .iter()
            .flat_map(|e| e.surrogate_keys().iter().cloned())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let url = digest_hex(key.as_bytes());
        let mut names = vec![
            self.ban_key("all-hard", "all"),
            self.ban_key("all-soft", "all"),
            self.ban_key("url-soft", &url),
            self.ban_key("url-hard", &url),
        ];
        for tag in &tags {
            names.extend(self.tag_bans(tag));
        }
        let args: Vec<Arg> = names.iter().map(|n| Arg::from(n.as_str())).collect();
        let values: Vec<Option<Bytes>> = self.inner.backend.command("MGET", &args).await?;
        let at = |i: usize| -> i64 {
            values
                .get(i)
                .and_then(|v| v.as_ref())
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                .unwrap_or(0)
        };
        let (all_hard, all_soft, url_soft, url_hard) = (at(0), at(1), at(2), at(3));
        let tag_index = |tag: &str| tags.iter().position(|t| t == tag).map(|p| 4 + 2 * p);
        // Bans are kept for `max_retention`: an entry older than that (kept alive by a younger
        // variant of the same URI) may have outlived the ban that purged it.
        let oldest = millis(SystemTime::now()) - self.inner.max_retention.as_millis() as i64;
        let mut out: Vec<Arc<Entry>> = Vec::with_capacity(entries.len());
        for entry in entries {
            // Compared with when the entry was *requested*: a fetch that began before a purge
            // and landed after it is purged too.
            let requested = millis(entry.request_time());
            if millis(entry.response_time()) < oldest {
                continue;
            }
            let (mut hard, mut soft) = (all_hard.max(url_hard), all_soft.max(url_soft));
            for tag in entry.surrogate_keys() {
                if let Some(i) = tag_index(tag) {
                    hard = hard.max(at(i));
                    soft = soft.max(at(i + 1));
                }
            }
            if hard >= requested {
                continue;
            }
            if soft >= requested {
                let purged = UNIX_EPOCH + Duration::from_millis(soft as u64);
                out.push(Arc::new(entry.purged(purged)));
            } else {
                out.push(Arc::new(entry));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.response_time()));
        Ok(out)
    }
}

impl<C: RedisClient> Store for RedisStore<C> {
    async fn get(&self, key: &str, policy: &PolicyConfig) -> Result<Vec<Arc<Entry>>, BackendError> {
        let hash = self.variants_key(key);
        let reply: Reply = self
            .inner
            .backend
            .command("HGETALL", &[Arg::from(hash.as_str())])
            .await?;
        let items = match reply {
            Reply::Array(items) => items,
            Reply::Nil => Vec::new(),
            other => {
                return Err(BackendError::Protocol(format!(
                    "HGETALL answered {other:?}"
                )));
            }
        };
        let mut entries = Vec::new();
        for pair in items.chunks(2) {
            let [_, Reply::Bytes(value)] = pair else {
                continue;
            };
            match codec::decode(value.clone(), policy) {
                Some(entry) => entries.push(entry),
                None => {
                    tracing::debug!(target: "palisade::cache", key, "a stored entry did not decode; ignored")
                }
            }
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_bans(key, entries).await
    }

    async fn put(&self, key: &str, entry: Arc<Entry>) -> Result<bool, BackendError> {
        let encoded = codec::encode(&entry);
        if encoded.len() > self.inner.max_entry_bytes {
            tracing::debug!(target: "palisade::cache", key, bytes = encoded.len(), "entry larger than the Redis store's limit: not stored");
            return Ok(false);
        }
        let args = [
            Arg::from(codec::selection_id(entry.selection()).as_str()),
            Arg::Bytes(encoded),
            Arg::Int(self.retention(&entry).as_millis() as i64),
            Arg::Int(MAX_VARIANTS as i64),
        ];
        self.inner
            .backend
            .run::<i64>(&PUT, &[self.variants_key(key)], &args)
            .await?;
        Ok(true)
    }

    async fn purge_key(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        let hash = self.variants_key(key);
        match mode {
            PurgeMode::Hard => {
                // The ban first: a fetch already in flight must not store it back.
                let ban = self.ban_key("url-hard", &digest_hex(key.as_bytes()));
                self.ban(ban, now).await?;
                let n: i64 = self.inner.backend.run(&PURGE_KEY, &[hash], &[]).await?;
                Ok(Some(n.max(0) as usize))
            }
            PurgeMode::Soft => {
                let n: i64 = self
                    .inner
                    .backend
                    .command("HLEN", &[Arg::from(hash.as_str())])
                    .await?;
                let ban = self.ban_key("url-soft", &digest_hex(key.as_bytes()));
                self.ban(ban, now).await?;
                Ok(Some(n.max(0) as usize))
            }
        }
    }

    async fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        let [hard, soft] = self.tag_bans(surrogate_key);
        let ban = match mode {
            PurgeMode::Hard => hard,
            PurgeMode::Soft => soft,
        };
        self.ban(ban, now).await?;
        Ok(None)
    }

    async fn purge_all(
        &self,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        let ban = match mode {
            PurgeMode::Hard => self.ban_key("all-hard", "all"),
            PurgeMode::Soft => self.ban_key("all-soft", "all"),
        };
        self.ban(ban, now).await?;
        Ok(None)
    }

    async fn claim_fetch(
        &self,
        key: &str,
        lease: Duration,
    ) -> Result<Option<String>, BackendError> {
        let claim = self.claim_key(key);
        let token = format!("{:016x}", palisade_core::random::u64());
        // Armed until the reply is known: a claim that lands after the timeout is given back
        // by its token (nobody else's is touched).
        let undo = Undo::new("cache", || {
            let (store, claim, token) = (self.clone(), claim.clone(), token.clone());
            async move {
                let backend = &store.inner.backend;
                let within = compensation_timeout(backend.timeout());
                backend
                    .run_within::<i64>(&RELEASE, &[claim], &[Arg::from(token.as_str())], within)
                    .await
            }
        });
        let args = [
            Arg::from(claim.as_str()),
            Arg::from(token.as_str()),
            Arg::from("NX"),
            Arg::from("PX"),
            Arg::Int(lease.as_millis().max(1) as i64),
        ];
        let reply: Reply = undo.settle(self.inner.backend.command("SET", &args).await)?;
        Ok(matches!(reply, Reply::Bytes(_)).then_some(token))
    }

    async fn release_fetch(&self, key: &str, token: &str) {
        let claim = self.claim_key(key);
        let released = self
            .inner
            .backend
            .run::<i64>(&RELEASE, &[claim], &[Arg::from(token)])
            .await;
        if let Err(error) = released {
            tracing::debug!(target: "palisade::cache", %error, "could not give a fetch claim back; it expires with its lease");
        }
    }

    async fn fetch_claimed(&self, key: &str) -> Result<bool, BackendError> {
        let claim = self.claim_key(key);
        let n: i64 = self
            .inner
            .backend
            .command("EXISTS", &[Arg::from(claim.as_str())])
            .await?;
        Ok(n > 0)
    }
}
