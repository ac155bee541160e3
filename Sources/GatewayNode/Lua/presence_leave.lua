-- A node's last connection of a user on the channel went. With lib_presence.
local MINE = KEYS[3]
local NODE, USER = ARGV[1], ARGV[2]

leave(MINE, USER)
if redis.call('SCARD', MINE) == 0 then redis.call('ZREM', NODES, NODE) end
return 1
