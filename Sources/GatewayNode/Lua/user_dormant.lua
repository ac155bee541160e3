-- A user's dorm: timer is due (dormant buyers, contract 4.6), in the user's slot; with
-- lib_publish, lib_event, lib_emit. Decides, without scanning anyone else:
-- connected on a live node instance -> {'later', due}: checked again a spell from now;
-- no owned product -> {'off', 0}: only buyers go dormant;
-- active (connected, or a first delivery) within the spell -> {'later', due};
-- the spell since that activity already told -> {'off', 0};
-- else the `user.dormant` event is written -> {'dormant', 0}.
-- 'off' and 'dormant' also forget `armed`: the caller removes the timer, the next
-- connect arms a new one.
-- KEYS[1]: seen hash (user_seen.lua); KEYS[2]: owned products (owns_update.lua);
-- KEYS[3]: the event log (one server) or the user slot's outbox (cluster)
-- ARGV[1]: the user; ARGV[2]: now (ms); ARGV[3]: the spell (ms); ARGV[4]: 'outbox' | 'inline';
-- ARGV[5]: the event log's retention (ms); ARGV[6]: event data template with $LAST_SEEN;
-- ARGV[7..]: the live node instances (conn: fields of any other instance are dropped)
local SEEN, OWNS, SINK = KEYS[1], KEYS[2], KEYS[3]
local USER, NOW, SPELL = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] == 'outbox' then EMIT.outbox = SINK end
EMIT.retention = tonumber(ARGV[5])
local live = {}
for i = 7, #ARGV do live['conn:' .. ARGV[i]] = true end

local seen = {}
local flat = redis.call('HGETALL', SEEN)
for i = 1, #flat, 2 do seen[flat[i]] = flat[i + 1] end
local connected = false
for field, count in pairs(seen) do
  if string.sub(field, 1, 5) == 'conn:' then
    if live[field] then
      connected = connected or tonumber(count) > 0
    else
      redis.call('HDEL', SEEN, field)
    end
  end
end
if connected then return {'later', NOW + SPELL} end

local newest = redis.call('ZREVRANGE', OWNS, 0, 0, 'WITHSCORES')
if #newest == 0 then
  redis.call('HDEL', SEEN, 'armed')
  return {'off', 0}
end
local lastSeen = tonumber(seen.last_seen)
local active = math.max(lastSeen or 0, tonumber(newest[2]))
if active + SPELL > NOW then return {'later', active + SPELL} end
redis.call('HDEL', SEEN, 'armed')
local spell = string.format('%d', active)
if seen.dormant_for == spell then return {'off', 0} end
redis.call('HSET', SEEN, 'dormant_for', spell)
local data = string.gsub(ARGV[6], '%$LAST_SEEN', lastSeen and string.format('%d', lastSeen) or 'null')
emitEvent(SINK, 'user.dormant', 'user:' .. USER, string.format('%d', NOW), data)
return {'dormant', 0}
