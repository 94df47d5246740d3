//! [`Flights`]: at most one origin request per cache key in this process; the others wait
//! for it and then look in the store again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

/// The origin requests in flight, by cache key.
///
/// Invariant: a key is in the map exactly while its [`Flight`] (the leader's guard) lives;
/// dropping the guard — the response stored, found not storable, failed, or the leader's
/// future dropped — removes it and wakes every waiter at once.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// The leader's guard for one key.
#[derive(Debug)]
pub(crate) struct Flight {
    flights: Arc<Flights>,
    key: String,
    // Dropped with the guard: receivers then see the channel closed.
    _done: watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut inflight = self
            .flights
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        inflight.remove(&self.key);
    }
}

/// What joining a key's flight gave.
pub(crate) enum Joined {
    /// No one is fetching it: this request leads.
    Leader(Flight),
    /// Someone is: wait for them.
    Follower(watch::Receiver<()>),
}

impl Flights {
    /// Leads the flight for `key`, or follows the one already under way.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Joined {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = inflight.get(key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        inflight.insert(key.to_owned(), rx);
        Joined::Leader(Flight {
            flights: self.clone(),
            key: key.to_owned(),
            _done: tx,
        })
    }

    /// Leads the flight for `key` if no one does (for a background revalidation).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &str) -> Option<Flight> {
        match self.join(key) {
            Joined::Leader(flight) => Some(flight),
            Joined::Follower(_) => None,
        }
    }

    /// How many keys are in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inflight.lock().unwrap().len()
    }
}

/// Waits until the leader is done, for at most `at_most`; whether it finished in time.
pub(crate) async fn wait(mut rx: watch::Receiver<()>, at_most: Duration) -> bool {
    // `changed` fails once the sender is gone: that is the signal.
    tokio::time::timeout(at_most, async { while rx.changed().await.is_ok() {} })
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_leader_and_followers_woken_when_it_ends() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Joined::Follower(rx) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(matches!(flights.join("other"), Joined::Leader(_)));
        let waiter = tokio::spawn(wait(rx, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(leader);
        assert!(waiter.await.unwrap(), "woken by the leader's end");
        assert_eq!(flights.len(), 0);
        // A follower of a leader that never ends gives up after its wait.
        let Joined::Leader(_stuck) = flights.join("k") else {
            panic!()
        };
        let Joined::Follower(rx) = flights.join("k") else {
            panic!()
        };
        assert!(!wait(rx, Duration::from_secs(1)).await);
    }
}
