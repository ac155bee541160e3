-- A channel's position, and what came after `since` when it can be recovered. With lib_pages.
-- SINCE '' for none. Mode `recover` (a subscriber): everything after `since` when it fits
-- the caps, else recovered 0 with the newest that fit. Mode `page` (a gap fill): the oldest
-- after `since` that fit (at least one), recovered 1; the caller reads on from the last one.
-- Returns {offset, epoch, recovered, off1, push1, off2, push2, ...} oldest first.
local META, LOG = KEYS[1], KEYS[2]
local SINCE, SINCE_EPOCH, NEW_EPOCH, TTL, MODE, MAX_BYTES, MAX_COUNT =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])

local meta = redis.call('HMGET', META, 'offset', 'epoch')
local off = tonumber(meta[1]) or 0
local epoch = meta[2]
if not epoch then
  epoch = NEW_EPOCH
  redis.call('HSET', META, 'epoch', epoch)
  redis.call('EXPIRE', META, TTL)
end
if SINCE == '' then return {off, epoch, 0} end
local since = tonumber(SINCE)
if SINCE_EPOCH ~= epoch or since > off then return {off, epoch, 0} end
if since == off then return {off, epoch, 1} end
local first = '0-' .. (since + 1)
if #redis.call('XRANGE', LOG, first, first) == 0 then return {off, epoch, 0} end
local res = {off, epoch, 1}
if MODE == 'page' then
  for _, e in ipairs(oldestThatFit(LOG, since + 1, off, MAX_BYTES, MAX_COUNT)) do
    res[#res + 1] = e[1]
    res[#res + 1] = e[2]
  end
else
  local kept, cut = newestThatFit(LOG, off, since + 1, MAX_BYTES, MAX_COUNT)
  if cut then res[3] = 0 end
  for i = #kept, 1, -1 do
    res[#res + 1] = kept[i][1]
    res[#res + 1] = kept[i][2]
  end
end
return res
