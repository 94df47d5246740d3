-- palisade fleet semaphore: at most N holders across instances, each a lease that expires.
-- KEYS[1] a sorted set: member = lease id, score = expiry (server ms).
-- ARGV[1] operation (acquire | renew | release), ARGV[2] lease id, ARGV[3] capacity,
-- ARGV[4] lease ms, ARGV[5] (tests only) now in ms instead of the server clock.
-- Returns {granted (1/0), holders, ms until the earliest lease expires (0: none)}.
-- The twin of `src/fleet/state.rs`.
local now
if ARGV[5] and tonumber(ARGV[5]) >= 0 then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local op, id, capacity, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local function int(x) return string.format('%d', x) end

-- Leases of instances that died (or stalled past their lease) free their slot here.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
local granted = 0
if op == 'acquire' then
  if redis.call('ZSCORE', KEYS[1], id) then
    granted = 1
  elseif redis.call('ZCARD', KEYS[1]) < capacity then
    redis.call('ZADD', KEYS[1], int(now + lease), id)
    granted = 1
  end
elseif op == 'renew' then
  -- Only a live lease can be renewed: an expired one may already belong to someone else.
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], int(now + lease), id)
    granted = 1
  end
elseif op == 'release' then
  redis.call('ZREM', KEYS[1], id)
end
-- The set lives as long as its longest lease (+1 s), whoever called: a caller with a short
-- lease must not expire another instance's long one.
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then
  redis.call('PEXPIRE', KEYS[1], int(math.max(tonumber(latest[2]) - now, 0) + 1000))
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = 0
if earliest[2] then wait = math.max(tonumber(earliest[2]) - now, 0) end
return {granted, redis.call('ZCARD', KEYS[1]), wait}
