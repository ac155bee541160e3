-- Moves a product's co-purchase counts (also-bought, contract 4.6), in its own slot: each
-- other product's number of distinct owners of both, by +1 or -1; a count at 0 leaves.
-- KEYS[1]: the product's counts (zset other product -> owners of both)
-- ARGV[1]: the change (1 or -1); ARGV[2..]: the other products
local ALSO, DELTA = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV do
  if tonumber(redis.call('ZINCRBY', ALSO, DELTA, ARGV[i])) <= 0 then redis.call('ZREM', ALSO, ARGV[i]) end
end
return #ARGV - 1
