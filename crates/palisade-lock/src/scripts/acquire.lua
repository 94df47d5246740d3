-- Take a lock and issue its fencing token in one step.
-- KEYS[1] the lock, KEYS[2] its fencing counter (same hash slot)
-- ARGV[1] owner token, ARGV[2] TTL in ms
-- Returns the new fencing token (>= 1), or -(ms left on the holder's lease) - 1 when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return -redis.call('PTTL', KEYS[1]) - 1
