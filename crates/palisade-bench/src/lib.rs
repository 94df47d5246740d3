//! Benchmarks of palisade against its peers; see `BENCHMARKS.md` at the repository root.
//!
//! - `benches/in_memory.rs` (criterion): in-memory keyed decisions vs governor.
//! - `bin/redis_load`: Redis decisions per second from 1–256 tasks (compare with
//!   `redis-benchmark` running the same script; `run-load.sh` does both).
//! - `bin/http_server`: axum hello world bare, with `RateLimitLayer`, or with tower_governor,
//!   for `wrk` (`run-load.sh`).
