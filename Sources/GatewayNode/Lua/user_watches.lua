-- The user's side of watches: the set of products the user watches (read lazily: an entry
-- whose product has no watch record any more is dropped when listed).
-- ACTION `add` (PRODUCT, TTL ms: the set lives as long as its newest watch), `remove`
-- (PRODUCT, or several), `list`. Returns the products for `list`, else 1.
local MINE = KEYS[1]
local ACTION = ARGV[1]

if ACTION == 'add' then
  local ttl = tonumber(ARGV[3])
  redis.call('SADD', MINE, ARGV[2])
  if redis.call('PTTL', MINE) < ttl then redis.call('PEXPIRE', MINE, ttl) end
elseif ACTION == 'remove' then
  for i = 2, #ARGV do redis.call('SREM', MINE, ARGV[i]) end
else
  return redis.call('SMEMBERS', MINE)
end
return 1
