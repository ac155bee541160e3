-- Ends a user's watch: the product's side.
local WATCHERS, WATCH, WATCH_EXP = KEYS[1], KEYS[2], KEYS[3]
local USER = ARGV[1]

redis.call('ZREM', WATCHERS, USER)
redis.call('HDEL', WATCH, USER)
redis.call('ZREM', WATCH_EXP, USER)
return 1
