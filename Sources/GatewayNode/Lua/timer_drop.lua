-- Removes a gw:timers member only while it is still due at the time it was read: a member
-- moved meanwhile (a renewal rescheduling a membership's reminder on another node, a
-- connect arming a dormancy check again after a spell was told) stays.
-- KEYS[1]: gw:timers
-- ARGV[1]: the member; ARGV[2]: its due time (ms) when read
-- Returns 1 when removed, 0 otherwise.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
