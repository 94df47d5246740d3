-- palisade rate limit: check one or more limits atomically; consume from all or from none.
--
-- The Redis twin of src/algorithm/*.rs: the same integer operations, every magnitude below
-- 2^52 so Lua's doubles are exact. A change here without the same change there fails the
-- differential test.
--
-- KEYS[i]   the key of limit i (all in one hash slot: they share the client's hash tag)
-- ARGV[1]   '1' to peek (decide, write nothing), else '0'
-- ARGV[2]   now in microseconds, or -1 to use the server clock (TIME). Tests only pass a time.
-- ARGV[3]   cost
-- ARGV[4]   number of limits n
-- ARGV[5 + 3(i-1) ..]  algorithm code, parameter 1, parameter 2 of limit i
--             1 token bucket: capacity in milli-tokens, refill in milli-tokens per second
--             2 GCRA: emission interval, tolerance (µs)
--             3 fixed window: quota, window (µs)
--             4 sliding window log: quota, window (µs)
--
-- Returns {allowed, now, then per limit: fits, remaining_before, remaining_after,
--          retry_after (-1: never), reset_before, reset_after}.

local peek = ARGV[1] == '1'
local now = tonumber(ARGV[2])
-- With an explicit (simulated) time, real time must not expire state before simulated time
-- does, so keys then live at least ten minutes.
local min_ttl = 1
if now >= 0 then min_ttl = 600000 end
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

local MILLI = 1000
local SECOND = 1000000

-- Integers must reach Redis as digits: tostring() would print 1.7e+15.
local function int(x)
  return string.format('%d', x)
end

local function div_ceil(a, b)
  return math.floor((a + b - 1) / b)
end

local function ttl_ms(micros)
  return int(math.max(div_ceil(micros, 1000), min_ttl))
end

local function token_bucket(key, cap, rate)
  local s = redis.call('HMGET', key, 't', 'u', 'c')
  local tokens, updated, carry
  if s[1] then
    tokens = math.min(tonumber(s[1]), cap)
    updated = tonumber(s[2])
    carry = tonumber(s[3])
  else
    tokens = cap
    updated = now
    carry = 0
  end
  local function accrue_time(missing, c)
    return div_ceil(math.max(missing * SECOND - c, 0), rate)
  end
  local elapsed = math.max(now - updated, 0)
  if tokens < cap then
    if elapsed >= accrue_time(cap - tokens, carry) then
      tokens = cap
      carry = 0
    else
      local accrued = elapsed * rate + carry
      tokens = tokens + math.floor(accrued / SECOND)
      carry = accrued % SECOND
    end
  else
    carry = 0
  end
  updated = math.max(updated, now)
  local need = cost * MILLI
  local fits = need <= tokens
  local left = tokens
  if fits then left = tokens - need end
  local retry = 0
  if not fits then
    if need > cap then retry = -1 else retry = accrue_time(need - tokens, carry) end
  end
  local function reset(x)
    if x >= cap then return 0 end
    return accrue_time(cap - x, carry)
  end
  local reset_after = reset(left)
  return {fits, math.floor(tokens / MILLI), math.floor(left / MILLI), retry, reset(tokens), reset_after},
    function()
      redis.call('HSET', key, 't', int(left), 'u', int(updated), 'c', int(carry))
      redis.call('PEXPIRE', key, ttl_ms(reset_after))
    end
end

local function gcra(key, interval, tolerance)
  local v = redis.call('GET', key)
  local tat = now
  if v then tat = math.max(tonumber(v), now) end
  local inc = cost * interval
  local new_tat = tat + inc
  local fits = inc <= tolerance and new_tat - now <= tolerance
  local retry = 0
  if not fits then
    if inc > tolerance then retry = -1 else retry = new_tat - now - tolerance end
  end
  local function remaining(t)
    return math.floor(math.max(tolerance - (t - now), 0) / interval)
  end
  local remaining_after, reset_after = 0, tat - now
  if fits then
    remaining_after = remaining(new_tat)
    reset_after = new_tat - now
  end
  return {fits, remaining(tat), remaining_after, retry, tat - now, reset_after},
    function()
      redis.call('SET', key, int(new_tat), 'PX', ttl_ms(new_tat - now))
    end
end

local function fixed_window(key, quota, window)
  local s = redis.call('HMGET', key, 's', 'n')
  local start = now - now % window
  local count = 0
  if s[1] and tonumber(s[1]) == start then count = tonumber(s[2]) end
  local fits = cost <= quota - math.min(count, quota)
  local after = count
  if fits then after = count + cost end
  local reset = start + window - now
  local retry = 0
  if not fits then
    if cost > quota then retry = -1 else retry = reset end
  end
  local reset_before, reset_after = reset, reset
  if count == 0 then reset_before = 0 end
  if after == 0 then reset_after = 0 end
  return {fits, math.max(quota - count, 0), math.max(quota - after, 0), retry, reset_before, reset_after},
    function()
      redis.call('HSET', key, 's', int(start), 'n', int(after))
      redis.call('PEXPIRE', key, ttl_ms(reset))
    end
end

local function sliding_window_log(key, quota, window)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local at = now
  local newest_at = nil
  if newest[2] then
    newest_at = tonumber(newest[2])
    at = math.max(now, newest_at)
  end
  local expire_through = math.max(at - window, 0)
  local count = redis.call('ZCOUNT', key, '(' .. int(expire_through), '+inf')
  local fits = cost <= quota - math.min(count, quota)
  local retry = 0
  if not fits then
    if cost > quota then
      retry = -1
    else
      local k = count + cost - quota
      local entry = redis.call('ZRANGEBYSCORE', key, '(' .. int(expire_through), '+inf',
        'WITHSCORES', 'LIMIT', k - 1, 1)
      retry = tonumber(entry[2]) + window - at
    end
  end
  local reset_before = 0
  if count > 0 then reset_before = newest_at + window - at end
  local remaining_after, reset_after = math.max(quota - count, 0), reset_before
  if fits then
    remaining_after = quota - count - cost
    if cost > 0 then reset_after = window end
  end
  return {fits, math.max(quota - count, 0), remaining_after, retry, reset_before, reset_after},
    function()
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(expire_through))
      local score = int(at)
      local i = 1
      while i <= cost do
        local batch = {}
        local last = math.min(cost, i + 499)
        for j = i, last do
          batch[#batch + 1] = score
          batch[#batch + 1] = score .. ':' .. int(count + j)
        end
        redis.call('ZADD', key, unpack(batch))
        i = last + 1
      end
      redis.call('PEXPIRE', key, ttl_ms(at + window - now))
    end
end

local algorithms = {token_bucket, gcra, fixed_window, sliding_window_log}

local allowed = true
local steps = {}
local writers = {}
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local algorithm = algorithms[tonumber(ARGV[base])]
  local step, writer = algorithm(KEYS[i], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]))
  if not step[1] then allowed = false end
  steps[i] = step
  writers[i] = writer
end

if allowed and not peek then
  for i = 1, n do writers[i]() end
end

local reply = {allowed and 1 or 0, now}
for i = 1, n do
  local s = steps[i]
  reply[#reply + 1] = s[1] and 1 or 0
  for j = 2, 6 do reply[#reply + 1] = s[j] end
end
return reply
