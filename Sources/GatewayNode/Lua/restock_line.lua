-- A page of a product's restock line after a place (read only): the users whose watch is
-- still live, in watch order. Paged by score, so entries leaving meanwhile shift nothing.
-- KEYS[1]: restock line  2: watch expiries
-- ARGV[1]: now (ms)  ARGV[2]: after this place ('-inf' for the start)  ARGV[3]: count
-- Returns {entries read, last place read, user...}.
local LINE, WATCH_EXP = KEYS[1], KEYS[2]
local NOW, AFTER, COUNT = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])

local from = AFTER == '-inf' and '-inf' or ('(' .. AFTER)
local page = redis.call('ZRANGEBYSCORE', LINE, from, '+inf', 'WITHSCORES', 'LIMIT', 0, COUNT)
local res = {#page / 2, AFTER}
for i = 1, #page, 2 do
  res[2] = page[i + 1]
  local exp = redis.call('ZSCORE', WATCH_EXP, page[i])
  if exp and tonumber(exp) > NOW then res[#res + 1] = page[i] end
end
return res
