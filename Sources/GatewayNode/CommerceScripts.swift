/// Lua for the order core: one script reads a consistent snapshot, one applies a
/// decision (checks, then every effect) atomically. Key layout is in `CommerceKeys`.
/// Both run on one Redis: under Cluster the pushes of a decision would go through an
/// outbox in the order's slot instead of being published inline.
enum CommerceScripts {
    /// ARGV: mode (order | payment | gift | pay | product), id.
    /// Returns {order fields, payment fields, product fields, stock}.
    static let load = """
    local mode, id = ARGV[1], ARGV[2]
    local function field(flat, name)
      for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
      return nil
    end
    local oid, pid, prod
    if mode == 'payment' then
      pid = id
      oid = redis.call('HGET', 'gw:{payment:' .. pid .. '}:info', 'order')
    elseif mode == 'gift' then
      oid = redis.call('GET', 'gw:giftcode:' .. id)
    elseif mode == 'pay' then
      oid = redis.call('GET', 'gw:paycode:' .. id)
    elseif mode == 'order' then
      oid = id
    else
      prod = id
    end
    local order = {}
    if oid then order = redis.call('HGETALL', 'gw:{order:' .. oid .. '}:info') end
    if not pid and #order > 0 then
      pid = field(order, 'payment')
      if pid == '' then pid = nil end
    end
    local payment = {}
    if pid then payment = redis.call('HGETALL', 'gw:{payment:' .. pid .. '}:info') end
    if #order > 0 then prod = field(order, 'product') end
    local product, stock = {}, 0
    if prod then
      product = redis.call('HGETALL', 'gw:{product:' .. prod .. '}:info')
      stock = redis.call('LLEN', 'gw:{product:' .. prod .. '}:stock')
    end
    return {order, payment, product, stock}
    """

    /// ARGV[1]: the decision as JSON {checks, ops, epoch, ttl}. Returns 1 when applied,
    /// or {0, index of the failed check}.
    static let apply = Scripts.publishFunction + """
    local p = cjson.decode(ARGV[1])
    for i, c in ipairs(p.checks) do
      local ok
      if c.t == 'hv' then ok = redis.call('HGET', c.k, 'version') == c.v
      elseif c.t == 'absent' then ok = redis.call('EXISTS', c.k) == 0
      elseif c.t == 'llen' then ok = redis.call('LLEN', c.k) >= c.n
      elseif c.t == 'llen<' then ok = redis.call('LLEN', c.k) < c.n
      end
      if not ok then return {0, i} end
    end
    local function split(s)
      local out = {}
      if s then for id in string.gmatch(s, '[^,]+') do out[#out + 1] = id end end
      return out
    end
    for _, o in ipairs(p.ops) do
      if o.t == 'hset' then
        redis.call('HSET', o.k, unpack(o.kv))
      elseif o.t == 'set' then
        if o.px then redis.call('SET', o.k, o.v, 'PX', o.px) else redis.call('SET', o.k, o.v) end
      elseif o.t == 'alloc' then
        local ids = redis.call('LPOP', o.stock, o.n)
        redis.call('HSET', o.order, 'keys', table.concat(ids, ','))
      elseif o.t == 'return' then
        local ids = split(redis.call('HGET', o.order, 'keys'))
        if #ids > 0 then redis.call('RPUSH', o.stock, unpack(ids)) end
        redis.call('HSET', o.order, 'keys', '')
      elseif o.t == 'burn' then
        local ids = split(redis.call('HGET', o.order, 'keys'))
        if #ids > 0 then redis.call('SADD', o.burned, unpack(ids)) end
      elseif o.t == 'member' then
        local n = redis.call('HINCRBY', o.k, o.f, o.d)
        if n <= 0 then redis.call('HDEL', o.k, o.f) end
        if (n == 1 and o.d > 0) or n <= 0 then
          local buyers = redis.call('HLEN', o.k)
          publish('product:' .. o.p, 'product.buyers', '{"product":"' .. o.p .. '","buyers":' .. buyers .. '}', p.psize, p.ttl, p.epoch)
        end
      elseif o.t == 'zadd' then
        redis.call('ZADD', o.k, o.s, o.m)
      elseif o.t == 'zrem' then
        redis.call('ZREM', o.k, o.m)
      elseif o.t == 'pub' then
        publish(o.ch, o.type, o.data, o.size, p.ttl, p.epoch)
      end
    end
    return 1
    """

    /// ARGV: product, then id, blob pairs. Adds unseen keys to the stock.
    /// Returns {added, duplicates, stock}.
    static let addKeys = """
    local keys, stock = 'gw:{product:' .. ARGV[1] .. '}:keys', 'gw:{product:' .. ARGV[1] .. '}:stock'
    if redis.call('EXISTS', 'gw:{product:' .. ARGV[1] .. '}:info') == 0 then return {-1, 0, 0} end
    local added, dup = 0, 0
    for i = 2, #ARGV, 2 do
      if redis.call('HSETNX', keys, ARGV[i], ARGV[i + 1]) == 1 then
        redis.call('RPUSH', stock, ARGV[i])
        added = added + 1
      else
        dup = dup + 1
      end
    end
    return {added, dup, redis.call('LLEN', stock)}
    """
}

/// Redis names of the order core's records.
enum CommerceKeys {
    static func order(_ id: String) -> String { "gw:{order:\(id)}:info" }
    static func payment(_ id: String) -> String { "gw:{payment:\(id)}:info" }
    static func stock(_ product: String) -> String { "gw:{product:\(product)}:stock" }
    /// Hash key id -> sealed key (AES-GCM); ids are keyed fingerprints, so a key seen once is never added again.
    static func cardKeys(_ product: String) -> String { "gw:{product:\(product)}:keys" }
    static func burned(_ product: String) -> String { "gw:{product:\(product)}:burned" }
    /// Hash user -> number of orders that make the user a member of the product's group.
    static func members(_ product: String) -> String { "gw:{product:\(product)}:members" }
    static let timers = "gw:timers"
    static func idempotency(_ buyer: String, _ key: String) -> String { "gw:idem:{\(buyer)}:\(key)" }
    /// A counter written before a WAIT that vouches for an earlier write (`confirmExisting`).
    static let durabilityMark = "gw:durability-mark"
    static func giftCode(_ code: String) -> String { "gw:giftcode:\(code)" }
    static func payCode(_ code: String) -> String { "gw:paycode:\(code)" }
}
