//! Nothing usable stored: one origin request per key in the process (flights) and across
//! the fleet (fetch claims); the others wait for it and look again.

use super::{Answer, Asked, prelude::*, storing::store_response};

/// Nothing usable stored: one request per key goes to the origin; the others wait for it and
/// look again (served if it stored a response they can use, else they go themselves).
pub(super) async fn miss<S, St, ReqB, ResB>(
    cache: &HttpCache<St>,
    mut inner: S,
    request: Request<ReqB>,
    asked: Asked,
    why: Forward,
) -> Answer<ResB, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: Store,
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError> + Send,
{
    let shared = &cache.inner;
    let mut collapsed = false;
    // Only plain requests lead or follow: the answer to a ranged or conditional one is not
    // the resource's.
    let flight = if asked.method == Method::GET && !is_conditional(&asked.headers) {
        match shared.flights.join(&asked.key) {
            Joined::Leader(flight) => Some(flight),
            Joined::Follower(done) => {
                shared.stats.record(Event::Coalesced);
                collapsed = true;
                if wait(done, shared.config.coalesce_wait).await {
                    if let Some(answer) = stored_answer(cache, &asked).await {
                        return Ok(answer);
                    }
                }
                None
            }
        }
    } else {
        None
    };
    // This process leads; on a shared store, another instance may already be fetching.
    let mut claim = None;
    if flight.is_some() {
        match shared
            .store
            .claim_fetch(&asked.key, shared.config.coalesce_wait)
            .await
        {
            Ok(Some(token)) => claim = Some(Claim::new(cache.store().clone(), &asked.key, token)),
            Ok(None) => {
                shared.stats.record(Event::Coalesced);
                collapsed = true;
                if let Some(answer) = wait_for_fleet(cache, &asked).await {
                    return Ok(answer);
                }
            }
            Err(error) => {
                tracing::debug!(target: "palisade::cache", %error, "could not claim the fetch; fetching anyway");
            }
        }
    }
    shared.stats.record(Event::Miss);
    let sent = shared.config.clock.now();
    let response = inner.call(request).await?;
    let mut status = CacheStatus::forward(why);
    status.collapsed = collapsed;
    let answer = store_response(cache, &asked, sent, response, status).await;
    // The response is stored (or known not storable): waiters here and elsewhere may look.
    // Given back before answering, not in the background: the next miss for this key here
    // would otherwise find the claim still held and wait a polling interval for nothing.
    if let Some(claim) = claim {
        claim.release().await;
    }
    drop(flight);
    Ok(answer)
}

/// A fetch claim on a shared store, given back once the response is stored
/// ([`Claim::release`]), or in the background when the leader's future is dropped mid-fetch —
/// so other instances stop waiting at once.
struct Claim<St: Store> {
    store: St,
    key: String,
    token: String,
}

impl<St: Store> Claim<St> {
    fn new(store: St, key: &str, token: String) -> Self {
        Claim {
            store,
            key: key.to_owned(),
            token,
        }
    }

    /// Gives the claim back now (dropping it does so in the background).
    async fn release(mut self) {
        let token = std::mem::take(&mut self.token);
        if !token.is_empty() {
            self.store.release_fetch(&self.key, &token).await;
        }
    }
}

impl<St: Store> Drop for Claim<St> {
    fn drop(&mut self) {
        // A store private to the process hands out empty tokens: nothing to give back.
        if self.token.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move { store.release_fetch(&key, &token).await });
    }
}

/// Another instance is fetching `asked`: polls the store (10 ms, doubling to 100 ms) until its
/// response is there, its claim is gone, or the coalescing wait is over.
pub(super) async fn wait_for_fleet<St: Store, B>(
    cache: &HttpCache<St>,
    asked: &Asked,
) -> Option<Response<PrefixedBody<B>>> {
    let shared = &cache.inner;
    let deadline = tokio::time::Instant::now() + shared.config.coalesce_wait;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        tokio::time::sleep(
            pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        if let Some(answer) = stored_answer(cache, asked).await {
            return Some(answer);
        }
        let claimed = shared
            .store
            .fetch_claimed(&asked.key)
            .await
            .unwrap_or(false);
        if !claimed || tokio::time::Instant::now() >= deadline {
            // Done (or gone) without a response this request may use: one last look.
            return stored_answer(cache, asked).await;
        }
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}

/// A follower's second look: the stored response the leader left, if it may serve this
/// request as it is.
pub(super) async fn stored_answer<St: Store, B>(
    cache: &HttpCache<St>,
    asked: &Asked,
) -> Option<Response<PrefixedBody<B>>> {
    let shared = &cache.inner;
    let variants = shared
        .store
        .get(&asked.key, &shared.config.policy)
        .await
        .ok()?;
    let entry = variants
        .iter()
        .find(|e| e.selection().matches(&asked.headers))?;
    let decision = decide(&entry.view(), &asked.directives, shared.config.clock.now());
    if decision.reuse != Reuse::Serve {
        return None;
    }
    shared.stats.record(Event::Hit);
    let status = CacheStatus {
        hit: true,
        ttl: Some(decision.ttl),
        collapsed: true,
        ..Default::default()
    };
    let response = from_entry(entry, &asked.method, &asked.headers, decision.age, false);
    Some(mark(response, shared, &status))
}
