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

    /// Presence without walking who is online. Per channel (one hash slot):
    /// - `online`: hash user -> number of node instances the user is present through,
    ///   so `HLEN` is the number of distinct users online on any node;
    /// - `onodes`: sorted set of node instances by heartbeat expiry (ms, Redis clock);
    /// - `on:<node>`: the users present through that node instance.
    /// A node joins/leaves a user when its first/last local connection subscribes/goes,
    /// and renews its heartbeat (one ZADD per channel, not per user) every ttl/3. A node
    /// instance whose heartbeat expired is dead: `reap` takes its users out, a bounded
    /// number per call, from the next renewal or presence call on that channel. Node
    /// instances are `<name>.<random>`, so a restarted node never inherits stale entries.
    /// KEYS: online, onodes (`on:<node>` sits beside them, same slot); ARGV[1]: this node instance.
    static let presenceFunctions = """
    local ONLINE, NODES, NODE = KEYS[1], KEYS[2], ARGV[1]
    local PREFIX = string.sub(ONLINE, 1, #ONLINE - 6) .. 'on:'
    local MINE = PREFIX .. NODE
    -- Keys live a day past the last renewal: long enough for any reap to finish, short
    -- enough that a channel whose nodes all died does not linger.
    local KEEP = 86400000
    local function clockMs()
      local t = redis.call('TIME')
      return t[1] * 1000 + math.floor(t[2] / 1000)
    end
    local function drop(user)
      if redis.call('HINCRBY', ONLINE, user, -1) <= 0 then redis.call('HDEL', ONLINE, user) end
    end
    local function join(user)
      if redis.call('SADD', MINE, user) == 1 then redis.call('HINCRBY', ONLINE, user, 1) end
    end
    local function leave(user)
      if redis.call('SREM', MINE, user) == 1 then drop(user) end
    end
    local function heartbeat(now, ttl)
      local old = redis.call('ZSCORE', NODES, NODE)
      redis.call('ZADD', NODES, now + ttl, NODE)
      for _, k in ipairs({ONLINE, NODES, MINE}) do redis.call('PEXPIRE', k, KEEP) end
      return old and tonumber(old) >= now
    end
    -- Forgets at most `budget` users of dead node instances.
    local function reap(now, budget)
      local dead = redis.call('ZRANGEBYSCORE', NODES, '-inf', '(' .. now, 'LIMIT', 0, 16)
      for _, n in ipairs(dead) do
        if budget <= 0 then break end
        local key = PREFIX .. n
        local users = redis.call('SPOP', key, budget)
        for _, u in ipairs(users) do drop(u) end
        budget = budget - #users
        if redis.call('SCARD', key) == 0 then redis.call('ZREM', NODES, n) end
      end
    end

    """

    /// A node's first connection of a user on the channel. ARGV: node, ttl ms, user.
    /// Returns 1 when the node had no live heartbeat on the channel (first user, or the
    /// node was taken for dead and may have lost users), else 0.
    static let presenceJoin = presenceFunctions + """
    join(ARGV[3])
    return heartbeat(clockMs(), tonumber(ARGV[2])) and 0 or 1
    """

    /// A node's last connection of a user on the channel went. ARGV: node, user.
    static let presenceLeave = presenceFunctions + """
    leave(ARGV[2])
    if redis.call('SCARD', MINE) == 0 then redis.call('ZREM', NODES, NODE) end
    return 1
    """

    /// The node's heartbeat on a channel, and a slice of reaping. ARGV: node, ttl ms.
    /// Returns 1 when the node's heartbeat had expired (its users may have been reaped:
    /// the node then sends its whole list with `presenceSync`), else 0.
    static let presenceRenew = presenceFunctions + """
    local now = clockMs()
    local alive = heartbeat(now, tonumber(ARGV[2]))
    reap(now, 10000)
    return alive and 0 or 1
    """

    /// Makes the node's set exactly its local users (after Redis came back, or after the
    /// node was taken for dead). ARGV: node, ttl ms, user1, user2, ...
    static let presenceSync = presenceFunctions + """
    local want = {}
    for i = 3, #ARGV do want[ARGV[i]] = true end
    for _, u in ipairs(redis.call('SMEMBERS', MINE)) do
      if want[u] then want[u] = nil else leave(u) end
    end
    for u in pairs(want) do join(u) end
    if redis.call('SCARD', MINE) == 0 then
      redis.call('ZREM', NODES, NODE)
    else
      heartbeat(clockMs(), tonumber(ARGV[2]))
    end
    return 1
    """

    /// The `presence` command: O(1) count and a sample of at most 100 users, whatever
    /// the number online (plus a bounded slice of reaping). KEYS: online, onodes, members
    /// of the product; ARGV: node. Returns {online, buyers, user1, ... (at most 100)}.
    static let presence = presenceFunctions + """
    reap(clockMs(), 1000)
    local online = redis.call('HLEN', ONLINE)
    local res = {online, redis.call('HLEN', KEYS[3])}
    if online > 0 then
      for _, u in ipairs(redis.call('HRANDFIELD', ONLINE, 100)) do res[#res + 1] = u end
    end
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
