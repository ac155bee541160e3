-- One product's side of a user's watch list: {record, price, in restock line 0|1, hold
-- record or ''}, or {} when the product or the user's watch on it is gone (the caller then
-- drops the product from the user's list).
local INFO, WATCH, LINE, HOLDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local USER = ARGV[1]

local record = redis.call('HGET', WATCH, USER)
local price = redis.call('HGET', INFO, 'price')
if not (record and price) then return {} end
local inLine = redis.call('ZSCORE', LINE, USER) and 1 or 0
return {record, tonumber(price), inLine, redis.call('HGET', HOLDS, USER) or ''}
