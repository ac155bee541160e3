-- Applies one order-core decision atomically: every check first, then every op.
-- Needs lib_publish, lib_event, lib_emit, lib_points and lib_apply (the checks and ops).
-- KEYS: every key the decision touches, all in the product's hash slot (one server: also
--       the pushed channels' meta/log and gw:timers); the program refers to them by index
--       (`key`, `order`, `stock`, `meta`, `timers`, ...)
-- ARGV[1]: the program, JSON {checks = [...], ops = [...]}
-- ARGV[2]: epoch of a channel's first push; ARGV[3]: history TTL (s)
-- ARGV[4]: KEYS index of the product's outbox (cluster), 0: pushes are published inline
-- ARGV[5]: how long the event log keeps an event (ms)
-- ARGV[6]: the member level ladder, JSON [[min_points, name], ...] (lib_points); absent: none
-- Returns {1, pushes emitted} when applied, {0, index of the failed check} otherwise.
local PROGRAM = cjson.decode(ARGV[1])
applySetup(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return applyProgram(PROGRAM)
