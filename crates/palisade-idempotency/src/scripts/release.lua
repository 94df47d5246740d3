-- Free the owner's claim after a failed attempt, counting the failure.
-- KEYS[1] the record; ARGV[1] owner token, ARGV[2] retention in ms (for the failure count)
-- Returns the failed attempts so far, or -1 when the claim is not the owner's.
local held = redis.call('HMGET', KEYS[1], 'state', 'owner')
if held[1] ~= 'processing' or held[2] ~= ARGV[1] then
  return -1
end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'owner', 'response')
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return failures
