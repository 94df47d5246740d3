-- Store the response under the owner's claim.
-- KEYS[1] the record; ARGV[1] owner token, ARGV[2] encoded response, ARGV[3] retention in ms
-- Returns 1, or 0 when the claim is not the owner's.
local held = redis.call('HMGET', KEYS[1], 'state', 'owner')
if held[1] ~= 'processing' or held[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'response', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
