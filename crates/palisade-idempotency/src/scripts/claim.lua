-- Claim an idempotency record.
-- KEYS[1] the record (a hash: state, fp, owner, response, failures)
-- ARGV[1] request fingerprint, ARGV[2] owner token, ARGV[3] lease in ms
-- Returns {'acquired'} | {'in_flight', lease_left_ms} | {'completed', response} | {'mismatch'}
local state = redis.call('HGET', KEYS[1], 'state')
if (not state) or state == 'released' then
  redis.call('HSET', KEYS[1], 'state', 'processing', 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('HDEL', KEYS[1], 'response')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'acquired'}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then
  return {'mismatch'}
end
if state == 'processing' then
  return {'in_flight', redis.call('PTTL', KEYS[1])}
end
return {'completed', redis.call('HGET', KEYS[1], 'response')}
