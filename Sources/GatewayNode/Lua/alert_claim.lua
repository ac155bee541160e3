-- Claims a page of a price drop's alert job for LEASE ms and reads it: first a page whose
-- lease lapsed (its node died or stalled), else the next one. With lib_publish (nowMs) and
-- lib_watchers.
-- KEYS[1]: job hash  2: claims (zset page start -> lease end ms)  3: watchers  4: watch records
-- ARGV[1]: page size  2: lease (ms)
-- Returns {'page', start, lease end, users read, spec, user, record, ...}
--       | {'wait', ms until the first lease ends} (no page left, others still claimed)
--       | {'done', alerts sent, ms since the job opened} | {'gone'} (no such job)
local JOB, CLAIMS, WATCHERS, WATCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local COUNT, LEASE = tonumber(ARGV[1]), tonumber(ARGV[2])

local job = redis.call('HMGET', JOB, 'spec', 'price', 'next', 'end', 'sent', 'at')
if not job[1] then return {'gone'} end
local now = tonumber(nowMs())
local start
local lapsed = redis.call('ZRANGEBYSCORE', CLAIMS, '-inf', now, 'LIMIT', 0, 1)
if #lapsed > 0 then
  start = tonumber(lapsed[1])
elseif job[4] ~= '1' then
  start = tonumber(job[3])
  redis.call('HSET', JOB, 'next', start + COUNT)
else
  local first = redis.call('ZRANGE', CLAIMS, 0, 0, 'WITHSCORES')
  if #first == 0 then return {'done', tonumber(job[5]), now - tonumber(job[6])} end
  return {'wait', tonumber(first[2]) - now}
end

local users, records = watcherPage(WATCHERS, WATCH, job[2], start, COUNT)
-- A short page is the last: no new pages after it (lapsed ones are still taken).
if #users < COUNT then redis.call('HSET', JOB, 'end', '1') end
local lease = now + LEASE
if #users == 0 then
  redis.call('ZREM', CLAIMS, start)
else
  redis.call('ZADD', CLAIMS, lease, start)
  redis.call('PEXPIRE', CLAIMS, redis.call('PTTL', JOB))
end
return appendWatches({'page', start, lease, #users, job[1]}, users, records)
