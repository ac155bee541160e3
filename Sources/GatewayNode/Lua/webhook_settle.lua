-- One step of a node's webhook sender, atomic: the attempts it finished are settled, then
-- up to COUNT due heads are leased to it (a delivered head's next event among them, due at
-- once). Batching both in one call is what lets a node keep up with thousands of events per
-- second. With lib_publish and lib_webhook.
-- Each settlement is `delivered`, `retry` (due again RETRY_IN ms from now, by Redis' clock:
-- a node's clock may be off) or `give_up` (to the dead letters with REASON), and is taken
-- only while the key's lease is still that attempt's (else 0: it lapsed and the key may be
-- another node's now; the receiver had the event at least once either way).
-- ARGV: COUNT, LEASE_MS, NODE, DEAD_CAP, then per settlement KEY ID TOKEN OUTCOME RETRY_IN
-- REASON TYPE.
-- Returns {taken (1/0 per settlement), claims, missing} (whClaim's claims and missing).
WH.log, WH.queues, WH.due, WH.leases, WH.attempts, WH.heads, WH.stats, WH.dead =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local COUNT, LEASE_MS, NODE, DEAD_CAP = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local FIRST, FIELDS = 5, 7

-- Checked before any write: a script's writes are not undone by a later error.
if not (COUNT and LEASE_MS and DEAD_CAP) or (#ARGV - FIRST + 1) % FIELDS ~= 0 then
  return redis.error_reply('webhook_settle: bad arguments')
end
for i = FIRST, #ARGV, FIELDS do
  local outcome = ARGV[i + 3]
  if outcome ~= 'retry' and outcome ~= 'delivered' and outcome ~= 'give_up' then
    return redis.error_reply('webhook_settle: unknown outcome ' .. tostring(outcome))
  end
  if outcome == 'retry' and not tonumber(ARGV[i + 4]) then
    return redis.error_reply('webhook_settle: bad retry delay')
  end
end

local now = tonumber(nowMs())
local taken = {}
for i = FIRST, #ARGV, FIELDS do
  local key, id, token, outcome, retryIn, reason, kind =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6]
  if redis.call('HGET', WH.leases, key) ~= token .. ' ' .. id then
    taken[#taken + 1] = 0
  else
    redis.call('HDEL', WH.leases, key)
    if outcome == 'retry' then
      redis.call('ZADD', WH.due, now + retryIn, key)
    else
      whPop(key, id, now, kind, outcome == 'give_up' and reason, DEAD_CAP)
    end
    taken[#taken + 1] = 1
  end
end
local claimed = whClaim(COUNT, LEASE_MS, NODE, DEAD_CAP, now)
return {taken, claimed[1], claimed[2]}
