//! Owner tokens: unique across processes, cheap to make.

use std::sync::{
    LazyLock,
    atomic::{AtomicU64, Ordering},
};

/// A token no other call in any process returns: 128 random bits drawn once per process
/// (UUID v4), a dash, and a per-process counter in hex.
///
/// For owner tokens of claims and locks, which must be *unique*, not secret (whoever can read
/// them from Redis can delete the key anyway); it spares a `getrandom` system call per call,
/// which showed in the idempotency layer's profile.
///
/// ```
/// let a = palisade_core::token::unique_token();
/// let b = palisade_core::token::unique_token();
/// assert_ne!(a, b);
/// assert!(a.len() > 32);
/// ```
pub fn unique_token() -> String {
    static PROCESS: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n:x}", *PROCESS)
}
