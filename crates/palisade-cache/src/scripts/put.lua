-- Stores one variant of a URI's responses.
-- KEYS[1]: the URI's hash (field: selection id → encoded entry)
-- ARGV[1]: selection id, ARGV[2]: encoded entry, ARGV[3]: retention (ms), ARGV[4]: max variants
-- The hash lives as long as its longest-lived variant; past the variant bound, only the new
-- one is kept.
local key = KEYS[1]
redis.call('HSET', key, ARGV[1], ARGV[2])
if redis.call('HLEN', key) > tonumber(ARGV[4]) then
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if field ~= ARGV[1] then
      redis.call('HDEL', key, field)
    end
  end
end
local retention = tonumber(ARGV[3])
if redis.call('PTTL', key) < retention then
  redis.call('PEXPIRE', key, retention)
end
return 1
