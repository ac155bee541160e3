-- The end of one delivery attempt, from the node holding the key's lease: `delivered`,
-- `retry` (due again RETRY_IN_MS from now, by Redis' clock: a node's clock may be off) or `give_up` (to the dead letters with REASON). Taken
-- only while the lease is still this attempt's (else 0: it lapsed and the key may be
-- another node's now; the receiver had the event at least once either way). With
-- lib_publish and lib_webhook.
-- Returns 1 when taken, 0 when the lease was not this attempt's.
local QUEUES, DUE, LEASES, ATTEMPTS, HEADS, STATS, DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local KEY, ID, TOKEN, OUTCOME, RETRY_IN, REASON, DEAD_CAP, TYPE =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8]
WH.queues, WH.due, WH.leases, WH.attempts, WH.heads, WH.stats, WH.dead = QUEUES, DUE, LEASES, ATTEMPTS, HEADS, STATS, DEAD

if redis.call('HGET', LEASES, KEY) ~= TOKEN .. ' ' .. ID then return 0 end
redis.call('HDEL', LEASES, KEY)
if OUTCOME == 'retry' then
  redis.call('ZADD', DUE, tonumber(nowMs()) + RETRY_IN, KEY)
elseif OUTCOME == 'delivered' then
  whPop(KEY, ID, tonumber(nowMs()), TYPE, false, DEAD_CAP)
elseif OUTCOME == 'give_up' then
  whPop(KEY, ID, tonumber(nowMs()), TYPE, REASON, DEAD_CAP)
else
  return redis.error_reply('webhook_settle: unknown outcome ' .. tostring(OUTCOME))
end
return 1
