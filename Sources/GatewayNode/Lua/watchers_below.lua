-- A page of watchers whose threshold is above PRICE, from rank START among them.
-- Returns {users scanned, user, record, ...} (a user without a record is skipped).
local WATCHERS, WATCH = KEYS[1], KEYS[2]
local PRICE, START, COUNT = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

-- By rank, not `LIMIT offset`: ZRANGE by index jumps there in O(log N), ZRANGEBYSCORE
-- walks every skipped member (quadratic over a long walk).
local first = redis.call('ZCOUNT', WATCHERS, '-inf', PRICE) + START
local users = redis.call('ZRANGE', WATCHERS, first, first + COUNT - 1)
if #users == 0 then return {0} end
local records = redis.call('HMGET', WATCH, unpack(users))
local res = {#users}
for i, u in ipairs(users) do
  if records[i] then
    res[#res + 1] = u
    res[#res + 1] = records[i]
  end
end
return res
