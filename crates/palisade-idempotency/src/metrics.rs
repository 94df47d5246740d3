//! The layer's request counter: `palisade_idempotency_requests_total{outcome}`.

/// Counts one request by how it ended (`executed`, `replayed`, `in_flight`, `not_stored`…).
pub(crate) fn count(outcome: &'static str) {
    metrics::counter!("palisade_idempotency_requests_total", "outcome" => outcome).increment(1);
}
