-- palisade circuit breaker: fleet-wide state.
-- KEYS[1] the fleet's "open until" key, KEYS[2] the probe lease key (same hash tag).
-- ARGV[1] operation, ARGV[2] this instance's id, ARGV[3] milliseconds.
-- Returns {now_ms, open_until_ms (0: not open), lease held by this instance (0/1)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, me, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function int(x) return string.format('%d', x) end

local function release()
  if redis.call('GET', KEYS[2]) == me then redis.call('DEL', KEYS[2]) end
end

local function open_until()
  local v = redis.call('GET', KEYS[1])
  if v and tonumber(v) > now then return tonumber(v) end
  return 0
end

if op == 'open' then
  -- Publish an opening (never shortening another instance's), and give up any probe lease.
  local deadline = now + ms
  if open_until() < deadline then
    redis.call('SET', KEYS[1], int(deadline), 'PX', int(ms + 1000))
  end
  release()
elseif op == 'close' then
  redis.call('DEL', KEYS[1])
  release()
elseif op == 'lease' then
  -- One instance at a time probes, and only once the fleet's open period has passed.
  if open_until() == 0 then
    redis.call('SET', KEYS[2], me, 'NX', 'PX', int(ms))
  end
end
local holder = 0
if redis.call('GET', KEYS[2]) == me then holder = 1 end
return {now, open_until(), holder}
