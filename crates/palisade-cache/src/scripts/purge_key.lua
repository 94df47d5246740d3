-- Deletes every variant of a URI. KEYS[1]: the URI's hash. Returns how many there were.
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
