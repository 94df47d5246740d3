-- One consumer-group read: entries idle for too long in the group's pending list (their
-- consumer died or failed them), then new ones. In a script so that a cluster routes it by the
-- stream key (XREADGROUP's first argument is not a key) and it is one round trip.
-- KEYS[1] the stream. ARGV[1] group, ARGV[2] consumer, ARGV[3] count, ARGV[4] min idle ms.
-- Returns {reclaimed entries, their delivery counts, XREADGROUP's reply}.
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], '0-0',
  'COUNT', ARGV[3])
local entries = claimed[2]
local deliveries = {}
for i, entry in ipairs(entries) do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  deliveries[i] = pending[1] and pending[1][4] or 1
end
local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
return {entries, deliveries, fresh}
