-- Shared by watchers_below and alert_claim: a page of a product's watchers whose threshold
-- is above `price`, from rank `start` among them. Returns the users read and, per user, its
-- watch record (false for a user without one).
-- By rank, not `LIMIT offset`: ZRANGE by index jumps there in O(log N), ZRANGEBYSCORE walks
-- every skipped member (quadratic over a long walk).
local function watcherPage(watchers, watch, price, start, count)
  local first = redis.call('ZCOUNT', watchers, '-inf', price) + start
  local users = redis.call('ZRANGE', watchers, first, first + count - 1)
  if #users == 0 then return users, {} end
  return users, redis.call('HMGET', watch, unpack(users))
end

-- Appends `user, record` pairs to `res` (users without a record left out).
local function appendWatches(res, users, records)
  for i, u in ipairs(users) do
    if records[i] then
      res[#res + 1] = u
      res[#res + 1] = records[i]
    end
  end
  return res
end
