-- One atomic gatekeeper step: processed marker + client state + audit entry + decision.
-- KEYS: 1 client state hash, 2 client processed-event set, 3 client audit stream,
--       4 partition's progression.evaluated stream, 5 client owner (clinic id).
--       All share the partition hash tag.
-- ARGV: 1 event_id, 2 expected state version, 3 state JSON, 4 audit entry JSON,
--       5 audit entry hash (new chain head), 6 decision JSON or "" when nothing was decided,
--       7 the event's clinic id.
-- Every check comes before the first write: a Lua error does not roll back writes.
local owner = redis.call('GET', KEYS[5])
if owner and owner ~= ARGV[7] then
  return 'foreign'
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 'duplicate'
end
local version = redis.call('HGET', KEYS[1], 'version') or '0'
if version ~= ARGV[2] then
  return 'conflict'
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', tonumber(version) + 1,
           'audit_head', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
if not owner then
  redis.call('SET', KEYS[5], ARGV[7])
end
redis.call('XADD', KEYS[3], '*', 'entry', ARGV[4], 'hash', ARGV[5])
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[6])
end
return 'applied'
