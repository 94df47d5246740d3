-- Extend a lock's lease only if the caller still owns it.
-- KEYS[1] the lock; ARGV[1] owner token, ARGV[2] TTL in ms. Returns 1 if extended, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
