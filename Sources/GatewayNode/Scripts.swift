/// Transitional: the order core's apply script (CommerceScripts.apply) still builds its
/// publish from this string; every other script uses Lua/lib_publish.lua. Goes with
/// CommerceScripts.swift.
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
}
