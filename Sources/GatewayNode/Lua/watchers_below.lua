-- A page of watchers whose threshold is above PRICE, from rank START among them.
-- With lib_watchers. Returns {users scanned, user, record, ...} (a user without a record is skipped).
local WATCHERS, WATCH = KEYS[1], KEYS[2]
local PRICE, START, COUNT = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local users, records = watcherPage(WATCHERS, WATCH, PRICE, START, COUNT)
return appendWatches({#users}, users, records)
