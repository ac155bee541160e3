-- Ends a user's watch: the product's side (the restock line too).
local WATCHERS, WATCH, WATCH_EXP, LINE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local USER = ARGV[1]

redis.call('ZREM', WATCHERS, USER)
redis.call('HDEL', WATCH, USER)
redis.call('ZREM', WATCH_EXP, USER)
redis.call('ZREM', LINE, USER)
return 1
