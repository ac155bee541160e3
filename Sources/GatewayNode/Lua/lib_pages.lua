-- Shared by read.lua and history.lua (prepended by LuaScript.embedded).
-- Walks a channel's log in pages so that no more than a reply's worth of pushes is ever
-- loaded or returned (`history.max_reply_bytes`, `history.max_recover`). Entry ids are
-- `0-<offset>` and contiguous (trimming only drops the oldest). Each kept push costs its
-- bytes plus one for the comma between publications in the reply.

-- How many entries to fetch next: about what the remaining room holds at the average
-- size seen so far (one at first), so large pushes are not loaded only to be dropped.
local function nextCount(kept, bytes, maxBytes, maxCount)
  if #kept == 0 then return 1 end
  local n = math.floor((maxBytes - bytes) * #kept / bytes) + 1
  return math.max(1, math.min(n, maxCount - #kept + 1, 64))
end

-- From offset `hi` down to `lo`, newest first: the entries that fit. Returns them
-- (newest first, each {offset, push}) and whether one in range was left out.
local function newestThatFit(log, hi, lo, maxBytes, maxCount)
  local kept, bytes, top = {}, 0, hi
  while top >= lo do
    local chunk = redis.call('XREVRANGE', log, '0-' .. top, '0-' .. lo, 'COUNT',
      nextCount(kept, bytes, maxBytes, maxCount))
    if #chunk == 0 then break end
    for _, e in ipairs(chunk) do
      local push = e[2][2]
      if #kept >= maxCount or bytes + #push + 1 > maxBytes then return kept, true end
      kept[#kept + 1] = {tonumber(string.sub(e[1], 3)), push}
      bytes = bytes + #push + 1
    end
    top = kept[#kept][1] - 1
  end
  return kept, false
end

-- From offset `lo` up to `hi`, oldest first: at least one entry, then as many as fit.
local function oldestThatFit(log, lo, hi, maxBytes, maxCount)
  local kept, bytes, from = {}, 0, lo
  while from <= hi do
    local chunk = redis.call('XRANGE', log, '0-' .. from, '0-' .. hi, 'COUNT',
      nextCount(kept, bytes, maxBytes, maxCount))
    if #chunk == 0 then break end
    for _, e in ipairs(chunk) do
      local push = e[2][2]
      if #kept > 0 and (#kept >= maxCount or bytes + #push + 1 > maxBytes) then return kept end
      kept[#kept + 1] = {tonumber(string.sub(e[1], 3)), push}
      bytes = bytes + #push + 1
    end
    from = kept[#kept][1] + 1
  end
  return kept
end
