//! [`Upcasters`]: old event payloads turned into today's shape on read, so stored events are
//! never rewritten.

use std::{collections::HashMap, fmt, sync::Arc};

use serde_json::Value;

type Step = Arc<dyn Fn(Value) -> Value + Send + Sync>;

/// The registered upcasting steps: `(event type, version v)` → the payload at version v+1.
///
/// ```
/// use palisade_eventstore::Upcasters;
/// use serde_json::json;
///
/// // v1 stored `{"Deposited": {"cents": 5}}`; v2 names the field `amount_cents`.
/// let upcasters = Upcasters::new().register("account.deposited", 1, |mut v| {
///     let cents = v["Deposited"]["cents"].take();
///     json!({"Deposited": {"amount_cents": cents}})
/// });
/// let now = upcasters
///     .upcast("account.deposited", 1, 2, json!({"Deposited": {"cents": 5}}))
///     .unwrap();
/// assert_eq!(now, json!({"Deposited": {"amount_cents": 5}}));
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Step>,
}

/// A stored event whose schema version cannot be brought to today's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no upcaster for {event_type} from schema version {from} (today's is {target})")]
pub struct MissingUpcaster {
    /// The event type.
    pub event_type: String,
    /// The version with no step onwards.
    pub from: u32,
    /// The version wanted.
    pub target: u32,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps: Vec<_> = self.steps.keys().collect();
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No steps: every event must be stored at today's version.
    pub fn new() -> Upcasters {
        Upcasters::default()
    }

    /// Registers the step of `event_type` from schema version `from` to `from + 1`.
    pub fn register(
        mut self,
        event_type: &str,
        from: u32,
        step: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> Upcasters {
        self.steps
            .insert((event_type.to_owned(), from), Arc::new(step));
        self
    }

    /// `payload`, stored at `version`, brought step by step to `target`. A payload at or above
    /// `target` is returned as it is (a newer writer's event read by an older reader is its
    /// decoder's business).
    pub fn upcast(
        &self,
        event_type: &str,
        version: u32,
        target: u32,
        mut payload: Value,
    ) -> Result<Value, MissingUpcaster> {
        let mut at = version;
        while at < target {
            let step = self
                .steps
                .get(&(event_type.to_owned(), at))
                .ok_or_else(|| MissingUpcaster {
                    event_type: event_type.to_owned(),
                    from: at,
                    target,
                })?;
            payload = step(payload);
            at += 1;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_chain_and_a_gap_is_an_error() {
        let upcasters = Upcasters::new()
            .register("e", 1, |v| json!({"v": 2, "from": v}))
            .register("e", 2, |v| json!({"v": 3, "from": v}));
        let v3 = upcasters.upcast("e", 1, 3, json!({"v": 1})).unwrap();
        assert_eq!(v3["v"], 3);
        assert_eq!(v3["from"]["from"]["v"], 1);
        assert_eq!(upcasters.upcast("e", 3, 3, json!(1)).unwrap(), json!(1));
        let missing = upcasters.upcast("other", 1, 2, json!(1)).unwrap_err();
        assert_eq!(missing.from, 1);
        let gap = Upcasters::new().register("e", 1, |v| v);
        assert_eq!(gap.upcast("e", 1, 3, json!(1)).unwrap_err().from, 2);
    }
}
