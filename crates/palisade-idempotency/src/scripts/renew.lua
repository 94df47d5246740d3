-- Extend the owner's lease.
-- KEYS[1] the record; ARGV[1] owner token, ARGV[2] lease in ms
-- Returns 1, or 0 when the claim is lost.
local held = redis.call('HMGET', KEYS[1], 'state', 'owner')
if held[1] ~= 'processing' or held[2] ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
