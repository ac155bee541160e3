-- Creates a product unless the id exists. ARGV: field/value pairs. Returns 1, or 0 if it exists.
local INFO = KEYS[1]

if redis.call('EXISTS', INFO) == 1 then return 0 end
redis.call('HSET', INFO, unpack(ARGV))
return 1
