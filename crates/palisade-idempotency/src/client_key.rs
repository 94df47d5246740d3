//! Deterministic idempotency keys for clients: the same logical operation always gets the
//! same key, so a retry is recognised as one.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{fingerprint::hex, json};

/// A key for `action` on `entity_id` with optional parameters: the first 32 lowercase hex
/// characters of SHA-256 over `"{entity_id}:{action}"`, followed — when `params` is given — by
/// `":"` and the parameters as Python's `json.dumps(params, sort_keys=True)` writes them.
///
/// That serialization (keys sorted at every level, `", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`) is reproduced exactly, so keys made by a Python client with the same
/// recipe match. Integers, strings, booleans, `null`, arrays and objects match byte for byte;
/// floats match for the usual decimal values (Python and Rust print some exponents differently,
/// e.g. `1e+16` against `1e16`) — prefer integer minor units for money anyway.
///
/// Never derive a key from a fresh UUID or a timestamp per attempt: a retry would then be a
/// new operation.
///
/// ```
/// use palisade_idempotency::idempotency_key_for;
/// use serde_json::json;
///
/// let key = idempotency_key_for("order-123", "create", Some(&json!({"currency": "USD", "amount": 100})));
/// assert_eq!(key.len(), 32);
/// // Parameter order does not matter.
/// assert_eq!(key, idempotency_key_for("order-123", "create", Some(&json!({"amount": 100, "currency": "USD"}))));
/// ```
pub fn idempotency_key_for(entity_id: &str, action: &str, params: Option<&Value>) -> String {
    let mut content = format!("{entity_id}:{action}");
    if let Some(params) = params {
        content.push(':');
        json::write_sorted(params, json::PYTHON, &mut content);
    }
    let digest = Sha256::digest(content.as_bytes());
    hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected values computed with CPython 3:
    //   hashlib.sha256(content.encode()).hexdigest()[:32]
    //   content = f"{entity_id}:{action}" + (":" + json.dumps(params, sort_keys=True))
    #[test]
    fn matches_python() {
        assert_eq!(
            idempotency_key_for("order-123", "create", None),
            PY_NO_PARAMS
        );
        assert_eq!(
            idempotency_key_for(
                "order-123",
                "create",
                Some(&json!({"amount": 100, "currency": "USD"}))
            ),
            PY_PARAMS
        );
        assert_eq!(
            idempotency_key_for(
                "ü-1",
                "pay",
                Some(&json!({"z": [1, 2.5, null, true], "a": {"é": "\"x\"\n😀", "b": -3}}))
            ),
            PY_NESTED
        );
    }

    const PY_NO_PARAMS: &str = "7b97db5c51b7ed320d3b4e965631e60d";
    const PY_PARAMS: &str = "0681b5ad331e2ebe28b4f1ab218048a4";
    const PY_NESTED: &str = "36ff88c4095cf5b0656a7e2516414356";
}
