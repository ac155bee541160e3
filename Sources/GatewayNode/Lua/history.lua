-- A history page. With lib_pages. SINCE '' for the latest. The window is the latest
-- LIMIT publications, or with a matching `since` the first LIMIT held after it; of that
-- window the newest that fit the caps. Returns {offset, epoch, truncated, off1, push1, ...}
-- oldest first; truncated is 1 when the caps left some out.
local META, LOG = KEYS[1], KEYS[2]
local SINCE, SINCE_EPOCH, LIMIT, MAX_BYTES, MAX_COUNT =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

local meta = redis.call('HMGET', META, 'offset', 'epoch')
local off = tonumber(meta[1]) or 0
local epoch = meta[2] or ''
local lo, hi
if SINCE ~= '' and SINCE_EPOCH == epoch then
  lo = tonumber(SINCE) + 1
  local head = redis.call('XRANGE', LOG, '-', '+', 'COUNT', 1)
  if #head > 0 then lo = math.max(lo, tonumber(string.sub(head[1][1], 3))) end
  hi = math.min(off, lo + LIMIT - 1)
else
  hi = off
  lo = math.max(1, off - LIMIT + 1)
end
local kept, cut = newestThatFit(LOG, hi, lo, MAX_BYTES, MAX_COUNT)
local res = {off, epoch, cut and 1 or 0}
for i = #kept, 1, -1 do
  res[#res + 1] = kept[i][1]
  res[#res + 1] = kept[i][2]
end
return res
