use axum::extract::MatchedPath;

use super::{Key, KeyError, KeyExtractor, RequestHead};

/// Keys by the route template axum matched (`/users/{id}`, not `/users/42`), with the method.
///
/// Only meaningful inside an axum `Router` (as a `route_layer` or a layer on a nested router).
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedRoute;

impl KeyExtractor for MatchedRoute {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let path = req
            .extensions
            .get::<MatchedPath>()
            .ok_or(KeyError::MissingRoute)?;
        let material = format!("{} {}", req.method, path.as_str());
        Ok(Key::text("route", material.as_bytes()))
    }
}
