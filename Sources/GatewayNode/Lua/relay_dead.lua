-- Moves one outbox entry that cannot be relayed (undecodable, or its relay failed with a
-- script error again and again) to the dead-letter stream of the same slot, atomically,
-- so the relay can go on with the entries behind it. The dead entry keeps the original
-- fields, plus `id` (its outbox id) and `reason`. Capped (approximately) at MAX entries.
-- Returns 1 when moved, 0 when the entry was gone already.
local OUTBOX, DEAD = KEYS[1], KEYS[2]
local ID, REASON, MAX = ARGV[1], ARGV[2], ARGV[3]

local found = redis.call('XRANGE', OUTBOX, ID, ID)
if #found == 0 then return 0 end
local args = {'XADD', DEAD, 'MAXLEN', '~', MAX, '*', 'id', ID, 'reason', REASON}
for _, v in ipairs(found[1][2]) do args[#args + 1] = v end
redis.call(unpack(args))
redis.call('XDEL', OUTBOX, ID)
return 1
