-- One product's side of a user's watch list: {record, price}, or {} when the product or
-- the user's watch on it is gone (the caller then drops the product from the user's list).
local INFO, WATCH = KEYS[1], KEYS[2]
local USER = ARGV[1]

local record = redis.call('HGET', WATCH, USER)
local price = redis.call('HGET', INFO, 'price')
if not (record and price) then return {} end
return {record, tonumber(price)}
