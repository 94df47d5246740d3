-- palisade circuit breaker: fleet-wide state.
-- KEYS[1] the fleet's state key: "<open until ms>" while open, "c<closed at ms>" after a probe
--         round closed the breaker (the recovery marker); KEYS[2] the probe lease key (same
--         hash tag).
-- ARGV[1] operation, ARGV[2] this instance's id, ARGV[3] milliseconds (open: the period;
--         lease: the lease; close: how long the recovery marker lives).
-- Returns {now_ms, open_until_ms (0: not open), lease held by this instance (0/1),
--          recovered (1: the last fleet event is a successful probe round)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, me, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function int(x) return string.format('%d', x) end

local function release()
  if redis.call('GET', KEYS[2]) == me then redis.call('DEL', KEYS[2]) end
end

local function recovered()
  local v = redis.call('GET', KEYS[1])
  return v ~= false and string.sub(v, 1, 1) == 'c'
end

local function open_until()
  local v = redis.call('GET', KEYS[1])
  if v and string.sub(v, 1, 1) ~= 'c' and tonumber(v) > now then return tonumber(v) end
  return 0
end

if op == 'open' then
  -- Publish an opening (never shortening another instance's). A probe round still running
  -- elsewhere is superseded: its lease goes, so its "close" cannot wipe this opening.
  local deadline = now + ms
  if open_until() < deadline then
    redis.call('SET', KEYS[1], int(deadline), 'PX', int(ms + 1000))
  end
  redis.call('DEL', KEYS[2])
elseif op == 'close' then
  -- Only the instance whose probe round decided may close the fleet; anyone else's close is
  -- local (it never wipes an opening published meanwhile).
  if redis.call('GET', KEYS[2]) == me then
    redis.call('SET', KEYS[1], 'c' .. int(now), 'PX', int(ms))
    redis.call('DEL', KEYS[2])
  end
elseif op == 'lease' then
  -- One instance at a time probes, and only once the fleet's open period has passed.
  if open_until() == 0 and not recovered() then
    redis.call('SET', KEYS[2], me, 'NX', 'PX', int(ms))
  end
end
local holder = 0
if redis.call('GET', KEYS[2]) == me then holder = 1 end
local closed = 0
if recovered() then closed = 1 end
return {now, open_until(), holder, closed}
