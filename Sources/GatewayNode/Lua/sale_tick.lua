-- A sale's timer is due (or a node's precise local timer fired): its timed pushes, its end.
-- Needs lib_publish, lib_emit, lib_sale. KEYS and ARGV: lib_sale's saleTick.
return saleTick(clockMs())
