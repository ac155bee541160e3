-- v1 upgrade (LegacyCommerceMigration): adds link fields to a v1 order or payment record,
-- only while the record exists (a record deleted meanwhile is not brought back half-made).
-- Idempotent: the links are the same key names every time.
-- KEYS[1]: the record (v1 name)
-- ARGV: link field, key name, ...
-- Returns 1 when the record exists, 0 otherwise.
local RECORD = KEYS[1]
if redis.call('EXISTS', RECORD) == 0 then return 0 end
redis.call('HSET', RECORD, unpack(ARGV))
return 1
