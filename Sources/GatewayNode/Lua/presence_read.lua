-- The `presence` command: O(1) count and a sample of at most SAMPLE users, whatever the
-- number online. With lib_presence. Returns {online, {dead node, ...}, {user, ...}}; when
-- dead nodes are named, the caller reaps them (presence_reap) and reads again.
local SAMPLE = tonumber(ARGV[1])

local online = redis.call('HLEN', ONLINE)
local users = {}
if online > 0 then users = redis.call('HRANDFIELD', ONLINE, SAMPLE) end
return {online, deadNodes(clockMs()), users}
