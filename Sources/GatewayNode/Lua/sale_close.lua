-- POST /api/v1/sales/{id}/close: closed at once (idempotent), the unsold units back to stock.
-- Needs lib_publish, lib_emit, lib_sale. KEYS and ARGV[1..8]: lib_sale's saleTick;
-- ARGV[9]: the merchant closing ('' the shop). Answers saleTick's answer, or
-- {-1} when the sale is another merchant's (nothing changed).
if ARGV[9] ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'merchant')
  if owner and owner ~= ARGV[9] then return {-1} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'closed', '1') end
return saleTick(clockMs())
