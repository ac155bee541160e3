/// Lua scripts: each applies one decision atomically in Redis.
enum Scripts {
    /// Appends a push to a channel's history, then announces it: the one way anything
    /// is published. Shared by every script that publishes.
    static let publishFunction = """
    local function nowMs()
      local t = redis.call('TIME')
      return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
    end
    -- `ts0`: a batch of publishes may share one clock reading.
    local function publish(ch, kind, data, size, ttl, epoch0, ts0)
      local meta, log = 'gw:{' .. ch .. '}:meta', 'gw:{' .. ch .. '}:log'
      local epoch = redis.call('HGET', meta, 'epoch')
      if not epoch then
        epoch = epoch0
        redis.call('HSET', meta, 'epoch', epoch)
      end
      local off = redis.call('HINCRBY', meta, 'offset', 1)
      local ts = ts0 or nowMs()
      local push = '{"push":"' .. kind .. '","channel":"' .. ch .. '","offset":' .. off ..
        ',"epoch":"' .. epoch .. '","ts":' .. ts .. ',"data":' .. data .. '}'
      redis.call('XADD', log, 'MAXLEN', '~', size, '0-' .. off, 'd', push)
      redis.call('EXPIRE', meta, ttl)
      redis.call('EXPIRE', log, ttl)
      redis.call('SPUBLISH', 'gw:{' .. ch .. '}', off .. ' ' .. epoch .. ' ' .. push)
      return off
    end

    """

    /// ARGV: channel, push type, data JSON, history size, ttl seconds, epoch if new. Returns the offset.
    static let publish = publishFunction + """
    return publish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
    """

    /// Walks a channel's log in pages so that no more than a reply's worth of pushes is
    /// ever loaded or returned (`history.max_reply_bytes`, `history.max_recover`). Entry
    /// ids are `0-<offset>` and contiguous (trimming only drops the oldest). Each kept
    /// push costs its bytes plus one for the comma between publications in the reply.
    static let pageFunctions = """
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

    """

    /// A channel's position, and what came after `since` when it can be recovered.
    /// KEYS: meta, log. ARGV: since offset ('' for none), since epoch, epoch to use if
    /// none, ttl seconds, mode, most bytes, most publications.
    /// Mode `recover` (a subscriber): everything after `since` when it fits the caps,
    /// else recovered 0 with the newest that fit. Mode `page` (a gap fill): the oldest
    /// after `since` that fit (at least one), recovered 1; the caller reads on from the
    /// last one. Returns {offset, epoch, recovered, off1, push1, off2, push2, ...} oldest first.
    static let read = pageFunctions + """
    local meta = redis.call('HMGET', KEYS[1], 'offset', 'epoch')
    local off = tonumber(meta[1]) or 0
    local epoch = meta[2]
    if not epoch then
      epoch = ARGV[3]
      redis.call('HSET', KEYS[1], 'epoch', epoch)
      redis.call('EXPIRE', KEYS[1], ARGV[4])
    end
    if ARGV[1] == '' then return {off, epoch, 0} end
    local since = tonumber(ARGV[1])
    if ARGV[2] ~= epoch or since > off then return {off, epoch, 0} end
    if since == off then return {off, epoch, 1} end
    local first = '0-' .. (since + 1)
    if #redis.call('XRANGE', KEYS[2], first, first) == 0 then return {off, epoch, 0} end
    local maxBytes, maxCount = tonumber(ARGV[6]), tonumber(ARGV[7])
    local res = {off, epoch, 1}
    if ARGV[5] == 'page' then
      for _, e in ipairs(oldestThatFit(KEYS[2], since + 1, off, maxBytes, maxCount)) do
        res[#res + 1] = e[1]
        res[#res + 1] = e[2]
      end
    else
      local kept, cut = newestThatFit(KEYS[2], off, since + 1, maxBytes, maxCount)
      if cut then res[3] = 0 end
      for i = #kept, 1, -1 do
        res[#res + 1] = kept[i][1]
        res[#res + 1] = kept[i][2]
      end
    end
    return res
    """

    /// History page. KEYS: meta, log. ARGV: since offset ('' for the latest), since
    /// epoch, limit, most bytes, most publications. The window is the latest `limit`
    /// publications, or with a matching `since` the first `limit` held after it; of
    /// that window the newest that fit the caps. Returns {offset, epoch, truncated,
    /// off1, push1, ...} oldest first; truncated is 1 when the caps left some out.
    static let history = pageFunctions + """
    local meta = redis.call('HMGET', KEYS[1], 'offset', 'epoch')
    local off = tonumber(meta[1]) or 0
    local epoch = meta[2] or ''
    local limit, maxBytes, maxCount = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
    local lo, hi
    if ARGV[1] ~= '' and ARGV[2] == epoch then
      lo = tonumber(ARGV[1]) + 1
      local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
      if #head > 0 then lo = math.max(lo, tonumber(string.sub(head[1][1], 3))) end
      hi = math.min(off, lo + limit - 1)
    else
      hi = off
      lo = math.max(1, off - limit + 1)
    end
    local kept, cut = newestThatFit(KEYS[2], hi, lo, maxBytes, maxCount)
    local res = {off, epoch, cut and 1 or 0}
    for i = #kept, 1, -1 do
      res[#res + 1] = kept[i][1]
      res[#res + 1] = kept[i][2]
    end
    return res
    """

    /// Creates a product unless the id exists. KEYS: product. ARGV: field/value pairs.
    static let createProduct = """
    if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
    redis.call('HSET', KEYS[1], unpack(ARGV))
    return 1
    """

    /// A product with its counts. ARGV: product id. Returns {fields, stock, buyers, watchers}.
    static let productView = """
    local base = 'gw:{product:' .. ARGV[1] .. '}:'
    return {redis.call('HGETALL', base .. 'info'), redis.call('LLEN', base .. 'stock'),
            redis.call('HLEN', base .. 'members'), redis.call('ZCARD', base .. 'watchers')}
    """
}
