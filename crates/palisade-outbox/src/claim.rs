//! The SQL of a relay's claim: a batch of unpublished events, in an order that keeps every
//! aggregate's events in sequence even with several relays.

use crate::schema::Schema;

/// `SELECT` claiming at most `$1` events, locked until the claiming transaction ends.
///
/// **The order rule.** `FOR UPDATE SKIP LOCKED` lets relays split the pending rows without
/// waiting on each other, but on its own it would let relay B take an aggregate's event 2 while
/// relay A still publishes its event 1. So a claimed event is kept only if no *earlier* event
/// of its aggregate is still unpublished outside this claim: an aggregate's events are taken
/// as a run starting at its oldest unpublished one, by one relay at a time. Rows dropped by the
/// rule stay locked until the claim's transaction ends and are taken by a later claim.
///
/// Why that is enough: event n+1 is claimable only once event n is published *and committed*
/// as such, and a relay marks an event published only after the broker acknowledged it. So the
/// broker receives n before n+1 — or n again later, which the broker's dedup drops.
/// Rows still backing off (`available_at` in the future) are not claimed, and still block the
/// later events of their aggregate.
///
/// **Blocked rows never fill the window.** Events that certainly cannot go — behind an earlier
/// event of their aggregate that is backing off, or that sits *later* in claim order (a
/// replayed dead letter gets a new position) — are left out before the `LIMIT`, so 256 of
/// them can never hide the event they wait for. Only events behind one another relay holds
/// right now still take room, for as long as that relay's batch lasts.
pub(crate) fn claim_sql(schema: &Schema) -> String {
    let outbox = schema.table("outbox");
    format!(
        "WITH claimed AS ( \
            SELECT position FROM {outbox} o \
            WHERE published_at IS NULL AND available_at <= now() \
              AND NOT EXISTS ( \
                SELECT 1 FROM {outbox} e \
                WHERE e.aggregatetype = o.aggregatetype AND e.aggregateid = o.aggregateid \
                  AND e.sequence < o.sequence AND e.published_at IS NULL \
                  AND (e.available_at > now() OR e.position > o.position) \
              ) \
            ORDER BY position LIMIT $1 \
            FOR UPDATE OF o SKIP LOCKED \
         ) \
         SELECT o.position, o.id::text AS id, o.aggregatetype, o.aggregateid, o.sequence, \
                o.type, o.payload::text AS payload, o.headers::text AS headers, \
                to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred_at, \
                o.attempts \
         FROM {outbox} o JOIN claimed c ON c.position = o.position \
         WHERE NOT EXISTS ( \
            SELECT 1 FROM {outbox} e \
            WHERE e.aggregatetype = o.aggregatetype AND e.aggregateid = o.aggregateid \
              AND e.sequence < o.sequence AND e.published_at IS NULL \
              AND e.position NOT IN (SELECT position FROM claimed) \
         ) \
         ORDER BY o.position"
    )
}
