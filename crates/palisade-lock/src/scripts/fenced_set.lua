-- A write that a resource accepts only from the newest lock holder.
-- KEYS[1] the resource (a hash: value, fence); ARGV[1] value, ARGV[2] fencing token.
-- Returns 1 if written, 0 if a write with a token >= this one was accepted before.
local last = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
local token = tonumber(ARGV[2])
if token <= last then
  return 0
end
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'fence', ARGV[2])
return 1
