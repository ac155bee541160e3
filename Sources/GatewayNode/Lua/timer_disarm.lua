-- Removes a `gw:timers` member only while its due time is still the one it was read with:
-- a timer armed again meanwhile (a connect after a dormant spell was told) stays.
-- KEYS[1]: gw:timers; ARGV[1]: the member; ARGV[2]: its due time when read (ms)
-- Returns 1 when removed, else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
