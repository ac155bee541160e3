/// Lua for buyer groups, presence, moderation and price watches.
enum CommunityScripts {
    /// A group message: refused while muted, rate limited for buyers, then published.
    /// ARGV: product, user, limited (1 for buyers), rate, window ms, data JSON, history
    /// size, ttl, epoch. Returns {offset} or {-1, muted until ms} or {-2, retry after ms}.
    static let groupPublish = Scripts.publishFunction + """
    local base = 'gw:{group:' .. ARGV[1] .. '}:'
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    local untilMs = tonumber(redis.call('GET', base .. 'mute:' .. ARGV[2]) or '0')
    if untilMs == 0 then
      -- Mutes written before they were keys of their own: honoured until they end, then dropped.
      untilMs = tonumber(redis.call('HGET', base .. 'muted', ARGV[2]) or '0')
      if untilMs > 0 and untilMs <= now then redis.call('HDEL', base .. 'muted', ARGV[2]) end
    end
    if untilMs > now then return {-1, untilMs} end
    if ARGV[3] == '1' then
      local key = base .. 'rate:' .. ARGV[2]
      local n = redis.call('INCR', key)
      -- Also when a window key somehow has no expiry: it would rate-limit forever.
      if n == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[5]) end
      if n > tonumber(ARGV[4]) then
        local ttl = redis.call('PTTL', key)
        if ttl < 0 then ttl = tonumber(ARGV[5]) end
        return {-2, ttl}
      end
    end
    return {publish('group:' .. ARGV[1], 'group.message', ARGV[6], ARGV[7], ARGV[8], ARGV[9])}
    """

    /// ARGV: channel, product, now ms. Returns {online, buyers, user1, user2, ... (at most 100)}.
    static let presence = """
    local entries = redis.call('ZRANGEBYSCORE', 'gw:{' .. ARGV[1] .. '}:presence', ARGV[3], '+inf')
    local seen, users, online = {}, {}, 0
    for _, e in ipairs(entries) do
      local user = string.match(e, '^[^|]*|(.*)$')
      if user and not seen[user] then
        seen[user] = true
        online = online + 1
        if #users < 100 then users[#users + 1] = user end
      end
    end
    local res = {online, redis.call('HLEN', 'gw:{product:' .. ARGV[2] .. '}:members')}
    for _, u in ipairs(users) do res[#res + 1] = u end
    return res
    """

    /// Mute, unmute, or announce a deletion. ARGV: product, action, user, until ms,
    /// offset, history size, ttl, epoch. Returns 1, or 0 when the offset does not exist.
    /// A mute is a key of its own (`mute:<user>`, value: until ms) that expires when the
    /// mute ends, so ended mutes never pile up.
    static let moderate = Scripts.publishFunction + """
    local base = 'gw:{group:' .. ARGV[1] .. '}:'
    if ARGV[2] == 'mute' then
      redis.call('SET', base .. 'mute:' .. ARGV[3], ARGV[4], 'PXAT', ARGV[4])
      redis.call('HDEL', base .. 'muted', ARGV[3])
    elseif ARGV[2] == 'unmute' then
      redis.call('DEL', base .. 'mute:' .. ARGV[3])
      redis.call('HDEL', base .. 'muted', ARGV[3])
    else
      local current = tonumber(redis.call('HGET', base .. 'meta', 'offset') or '0')
      local off = tonumber(ARGV[5])
      if off < 1 or off > current then return 0 end
      publish('group:' .. ARGV[1], 'group.deleted', '{"offset":' .. off .. '}', ARGV[6], ARGV[7], ARGV[8])
    end
    return 1
    """

    /// ARGV: product, user, below ('' for none), now ms, ttl ms. Returns the price, or -1 without the product.
    /// Watches end `ttl` after they were set: `watch:exp` (user by expiry) lets each new
    /// watch drop up to 100 ended ones of the product, and every watch key of the product
    /// and of the user lives as long as its newest watch, so nothing outlives the last one.
    static let watch = """
    local base = 'gw:{product:' .. ARGV[1] .. '}:'
    local price = redis.call('HGET', base .. 'info', 'price')
    if not price then return -1 end
    local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
    local ended = redis.call('ZRANGEBYSCORE', base .. 'watch:exp', '-inf', now, 'LIMIT', 0, 100)
    for _, u in ipairs(ended) do
      redis.call('ZREM', base .. 'watchers', u)
      redis.call('HDEL', base .. 'watch', u)
      redis.call('ZREM', base .. 'watch:exp', u)
      redis.call('SREM', 'gw:{user:' .. u .. '}:watches', ARGV[1])
    end
    local threshold = ARGV[3] ~= '' and ARGV[3] or price
    local record = ARGV[3] .. '|' .. price .. '|||' .. (now + ttl)
    local mine = 'gw:{user:' .. ARGV[2] .. '}:watches'
    redis.call('ZADD', base .. 'watchers', threshold, ARGV[2])
    redis.call('HSET', base .. 'watch', ARGV[2], record)
    redis.call('ZADD', base .. 'watch:exp', now + ttl, ARGV[2])
    redis.call('SADD', mine, ARGV[1])
    for _, k in ipairs({base .. 'watchers', base .. 'watch', base .. 'watch:exp', mine}) do
      if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
    end
    return tonumber(price)
    """

    /// ARGV: product, user.
    static let unwatch = """
    redis.call('ZREM', 'gw:{product:' .. ARGV[1] .. '}:watchers', ARGV[2])
    redis.call('HDEL', 'gw:{product:' .. ARGV[1] .. '}:watch', ARGV[2])
    redis.call('ZREM', 'gw:{product:' .. ARGV[1] .. '}:watch:exp', ARGV[2])
    redis.call('SREM', 'gw:{user:' .. ARGV[2] .. '}:watches', ARGV[1])
    return 1
    """

    /// ARGV: user. Returns {product, record, price, ...}; forgets watches of products gone.
    static let watches = """
    local products = redis.call('SMEMBERS', 'gw:{user:' .. ARGV[1] .. '}:watches')
    local res = {}
    for _, p in ipairs(products) do
      local record = redis.call('HGET', 'gw:{product:' .. p .. '}:watch', ARGV[1])
      local price = redis.call('HGET', 'gw:{product:' .. p .. '}:info', 'price')
      if record and price then
        res[#res + 1] = p
        res[#res + 1] = record
        res[#res + 1] = price
      else
        redis.call('SREM', 'gw:{user:' .. ARGV[1] .. '}:watches', p)
      end
    end
    return res
    """

    /// PATCH a product. ARGV: product, price ('' to keep), title ('' to keep), product
    /// history size, ttl, epoch. Returns {previous price, price, title, currency, merchant}
    /// or {} without the product. A lower price is announced on `product:` here; the
    /// node then alerts watchers in batches.
    static let updateProduct = Scripts.publishFunction + """
    local key = 'gw:{product:' .. ARGV[1] .. '}:info'
    local f = redis.call('HMGET', key, 'price', 'title', 'currency', 'merchant')
    if not f[1] then return {} end
    local previous = tonumber(f[1])
    local price, title = previous, f[2]
    if ARGV[2] ~= '' then price = tonumber(ARGV[2]) end
    if ARGV[3] ~= '' then title = ARGV[3] end
    redis.call('HSET', key, 'price', price, 'title', title)
    if price ~= previous then
      publish('product:' .. ARGV[1], 'product.price', cjson.encode({product = ARGV[1], previous = previous,
        price = price, currency = f[3]}), ARGV[4], ARGV[5], ARGV[6])
    end
    return {previous, price, title, f[3], f[4]}
    """

    /// A page of watchers whose threshold is above `price`. ARGV: product, price, start, count.
    /// Returns {users scanned, user, record, ...} (a user without a record is skipped).
    static let watchersBelow = """
    local base = 'gw:{product:' .. ARGV[1] .. '}:'
    -- By rank, not `LIMIT offset`: ZRANGE by index jumps there in O(log N), ZRANGEBYSCORE
    -- walks every skipped member (quadratic over a long walk).
    local first = redis.call('ZCOUNT', base .. 'watchers', '-inf', ARGV[2]) + tonumber(ARGV[3])
    local users = redis.call('ZRANGE', base .. 'watchers', first, first + tonumber(ARGV[4]) - 1)
    if #users == 0 then return {0} end
    local records = redis.call('HMGET', base .. 'watch', unpack(users))
    local res = {#users}
    for i, u in ipairs(users) do
      if records[i] then
        res[#res + 1] = u
        res[#res + 1] = records[i]
      end
    end
    return res
    """

    /// Sends a batch of alerts. ARGV: product, history size, ttl, epoch, then for each:
    /// user, record seen, record after, data JSON. A watch changed meanwhile is skipped.
    /// Returns the number sent.
    static let sendAlerts = Scripts.publishFunction + """
    local key = 'gw:{product:' .. ARGV[1] .. '}:watch'
    local sent = 0
    local ts = nowMs()
    for i = 5, #ARGV, 4 do
      if redis.call('HGET', key, ARGV[i]) == ARGV[i + 1] then
        redis.call('HSET', key, ARGV[i], ARGV[i + 2])
        publish('user:' .. ARGV[i], 'price.drop', ARGV[i + 3], ARGV[2], ARGV[3], ARGV[4], ts)
        sent = sent + 1
      end
    end
    return sent
    """
}
