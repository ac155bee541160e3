-- A claimed page of a price drop's alert job was sent: its claim ends (if still the one
-- this node holds: a lapsed lease may have been taken again) and its alerts are counted.
-- KEYS[1]: job hash  2: claims. ARGV[1]: page start  2: lease end  3: alerts sent
local JOB, CLAIMS = KEYS[1], KEYS[2]
local START, LEASE, SENT = ARGV[1], ARGV[2], ARGV[3]

if tonumber(redis.call('ZSCORE', CLAIMS, START)) == tonumber(LEASE) then redis.call('ZREM', CLAIMS, START) end
if redis.call('EXISTS', JOB) == 1 then redis.call('HINCRBY', JOB, 'sent', SENT) end
return 1
