-- The node's heartbeat on a channel. With lib_presence.
-- Returns {expired, dead node, ...}: expired is 1 when the node's heartbeat had expired
-- (its users may have been reaped: the node then sends its whole list with presence_sync);
-- the dead node instances are for presence_reap.
local MINE = KEYS[3]
local NODE, TTL = ARGV[1], tonumber(ARGV[2])

local now = clockMs()
local alive = heartbeat(MINE, NODE, now, TTL)
local res = {alive and 0 or 1}
for _, n in ipairs(deadNodes(now)) do res[#res + 1] = n end
return res
