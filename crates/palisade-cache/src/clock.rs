//! [`Clock`]: where the layer reads the time (the policy itself only takes it as a parameter).

use std::{fmt, sync::Arc, time::SystemTime};

/// The wall clock the cache reads `now` from: the system's by default; [`Clock::tokio`] follows
/// tokio's clock, so tests under `tokio::time::pause()` move it with `advance`.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// `SystemTime::now()`.
    pub fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    /// The system time when called, then moving with `tokio::time::Instant` (pausable).
    pub fn tokio() -> Self {
        let (wall, instant) = (SystemTime::now(), tokio::time::Instant::now());
        Clock(Arc::new(move || wall + instant.elapsed()))
    }

    /// Any source of time.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}
