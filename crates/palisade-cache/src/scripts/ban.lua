-- Records a purge: responses received at or before ARGV[1] (ms) under this ban are purged.
-- KEYS[1]: the ban; ARGV[1]: the purge time (ms); ARGV[2]: how long to remember it (ms).
-- Keeps the latest time: a purge never un-purges what an earlier one purged.
local previous = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > previous then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
