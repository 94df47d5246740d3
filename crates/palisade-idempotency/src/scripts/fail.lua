-- A failed attempt of the owner's claim, in one step: released for another attempt, or — when
-- this was the last allowed attempt — retired (completed with the dead-letter marker), so no
-- worker can claim it between the two.
-- KEYS[1] the record; ARGV[1] owner token, ARGV[2] retention in ms, ARGV[3] max attempts,
-- ARGV[4] the dead-letter marker
-- Returns {failures, retired (0/1)}, or {-1, 0} when the claim is not the owner's.
local held = redis.call('HMGET', KEYS[1], 'state', 'owner')
if held[1] ~= 'processing' or held[2] ~= ARGV[1] then
  return {-1, 0}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HDEL', KEYS[1], 'owner')
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'response', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {failures, 1}
end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'response')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {failures, 0}
