-- sale.buy: the sale's checks, then the order program (lib_apply) that takes the units and
-- creates the order, in one step. The checks come first and read only the sale's hash
-- and the buyer's share: a refusal (most buys of a rush) decodes no JSON and writes nothing.
-- Needs lib_publish, lib_event, lib_emit, lib_points, lib_sale, lib_apply.
-- KEYS: the program's (CommerceProgram, with the sale's keys among them)
-- ARGV[1..6]: as commerce_apply.lua's; ARGV[7]: KEYS index of the sale; ARGV[8]: of its
-- buyers; ARGV[9]: the buyer; ARGV[10]: units asked; ARGV[11]: the sale's nonce as the node knows it
-- Returns {1, pushes emitted, due of the sale.stock made pending (0: one was)} when bought,
-- {0, reason, n, m} when refused: unknown, stale (another nonce), too_early (n: ms to the
-- start), ended, sold_out, only_left (n left), over_limit (n held, m per_user);
-- {2, index of the failed check} when the program's check failed.
local sale, buyers = KEYS[tonumber(ARGV[7])], KEYS[tonumber(ARGV[8])]
local f = redis.call('HMGET', sale, 'nonce', 'starts_at', 'ends_at', 'closed', 'remaining', 'per_user')
if not f[1] then return {0, 'unknown'} end
if f[1] ~= ARGV[11] then return {0, 'stale'} end
local now = clockMs()
local starts = tonumber(f[2])
if now < starts then return {0, 'too_early', starts - now} end
if f[4] == '1' or now >= tonumber(f[3]) then return {0, 'ended'} end
local want, left = tonumber(ARGV[10]), tonumber(f[5])
if left <= 0 then return {0, 'sold_out'} end
if left < want then return {0, 'only_left', left} end
local held = tonumber(redis.call('HGET', buyers, ARGV[9]) or '0')
if held + want > tonumber(f[6]) then return {0, 'over_limit', held, tonumber(f[6])} end

applySetup(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
local r = applyProgram(cjson.decode(ARGV[1]))
if r[1] == 0 then return {2, r[2]} end
if r[1] ~= 1 then return r end
return {1, r[2], SALE.due and string.format('%d', SALE.due) or 0}
