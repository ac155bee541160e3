-- Takes or keeps the demo-bot lease. Returns 1 while NODE holds it.
local LEASE = KEYS[1]
local NODE, TTL_MS = ARGV[1], ARGV[2]

if redis.call('SET', LEASE, NODE, 'NX', 'PX', TTL_MS) then return 1 end
if redis.call('GET', LEASE) == NODE then redis.call('PEXPIRE', LEASE, TTL_MS) return 1 end
return 0
