-- v1 upgrade (LegacyCommerceMigration): adds link fields to a v1 order or payment record,
-- only while the record exists (a record deleted meanwhile is not brought back half-made).
-- Idempotent: the links are the same key names every time.
-- KEYS[1]: the record (v1 name)
-- ARGV: link field, key name, ...
-- Returns 1 when it changed the record, 0 when the record is gone or already linked
-- (so the counts of nodes upgrading at once add up to the records upgraded).
local RECORD = KEYS[1]
if redis.call('EXISTS', RECORD) == 0 then return 0 end
local linked = true
for i = 1, #ARGV, 2 do
  if redis.call('HGET', RECORD, ARGV[i]) ~= ARGV[i + 1] then linked = false end
end
if linked then return 0 end
redis.call('HSET', RECORD, unpack(ARGV))
return 1
