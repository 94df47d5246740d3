-- Take a lock and issue its fencing token in one step.
-- KEYS[1] the lock, KEYS[2] its fencing counter (same hash slot)
-- ARGV[1] owner token, ARGV[2] TTL in ms
-- Returns the new fencing token (>= 1), or -(ms left on the holder's lease) - 1 when held.
--
-- The token is max(last token + 1, server time in µs): strictly increasing while the counter
-- lives, and — because it is tied to the clock — still above every earlier token after the
-- counter has expired or Redis lost its data. So the counter can expire with the lock (it is
-- kept an hour past the lease): one counter per *live* name, not per name ever locked.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  local token = math.max(last + 1, now_us)
  redis.call('SET', KEYS[2], string.format('%d', token), 'PX', tonumber(ARGV[2]) + 3600000)
  return token
end
return -redis.call('PTTL', KEYS[1]) - 1
