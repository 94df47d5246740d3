-- Adds a stream entry once per event id (Redis 7 has no idempotent XADD).
-- KEYS[1] the stream, KEYS[2] the event's dedup key (same hash slot as the stream).
-- ARGV[1] the dedup window in ms, ARGV[2..] the entry's field/value pairs.
-- Returns {1, entry id} when added, {0, entry id} when the event was already there.
local existing = redis.call('GET', KEYS[2])
if existing then
  return {0, existing}
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
