-- Opens a price drop's alert job: the pages of the product's watchers above the new price,
-- which any node may claim (alert_claim). With lib_publish (nowMs).
-- KEYS[1]: the job hash. ARGV[1]: the drop (spec JSON)  2: the new price  3: ttl (ms)
local JOB = KEYS[1]
local SPEC, PRICE, TTL = ARGV[1], ARGV[2], ARGV[3]

redis.call('HSET', JOB, 'spec', SPEC, 'price', PRICE, 'next', 0, 'sent', 0, 'at', nowMs())
redis.call('PEXPIRE', JOB, TTL)
return 1
