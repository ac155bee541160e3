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
      redis.call('PUBLISH', 'gw:{' .. ch .. '}', off .. ' ' .. epoch .. ' ' .. push)
      return off
    end

    """

    /// ARGV: channel, push type, data JSON, history size, ttl seconds, epoch if new. Returns the offset.
    static let publish = publishFunction + """
    return publish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
    """

    /// A channel's position, and what came after `since` when it can be recovered.
    /// KEYS: meta, log. ARGV: since offset ('' for none), since epoch, epoch to use if
    /// none, ttl seconds. Returns {offset, epoch, recovered, off1, push1, off2, push2, ...}.
    static let read = """
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
    local entries = redis.call('XRANGE', KEYS[2], '0-' .. (since + 1), '+')
    if #entries == 0 or entries[1][1] ~= ('0-' .. (since + 1)) then return {off, epoch, 0} end
    local res = {off, epoch, 1}
    for _, e in ipairs(entries) do
      res[#res + 1] = tonumber(string.sub(e[1], 3))
      res[#res + 1] = e[2][2]
    end
    return res
    """

    /// History page. KEYS: meta, log. ARGV: since offset ('' for the latest), since
    /// epoch, limit. Returns {offset, epoch, off1, push1, ...} oldest first.
    static let history = """
    local meta = redis.call('HMGET', KEYS[1], 'offset', 'epoch')
    local off = tonumber(meta[1]) or 0
    local epoch = meta[2] or ''
    local res = {off, epoch}
    local entries
    if ARGV[1] ~= '' and ARGV[2] == epoch then
      entries = redis.call('XRANGE', KEYS[2], '0-' .. (tonumber(ARGV[1]) + 1), '+', 'COUNT', ARGV[3])
    else
      local rev = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
      entries = {}
      for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
    end
    for _, e in ipairs(entries) do
      res[#res + 1] = tonumber(string.sub(e[1], 3))
      res[#res + 1] = e[2][2]
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
