-- One atomic gatekeeper step: processed marker + client state + audit entry + decision.
-- KEYS: 1 client state hash, 2 client processed-event set, 3 client audit stream,
--       4 partition's progression.evaluated stream, 5 client owner (clinic id),
--       6 client content-digest hash, 7 client checkpoint hash (day number ->
--       "<audit position> <state JSON>"). All share the partition hash tag.
-- ARGV: 1 event_id, 2 expected state version, 3 expected chain head (the hash the new
--       entry links to), 4 state JSON, 5 audit entry as stored (compressed JSON),
--       6 audit entry hash (new chain head), 7 the event's clinic id,
--       8 the event's content digest (an event id reused with other content is
--       refused: the caller compares digests before it decides),
--       9 the day number this event opens, or '', and 10 the state before it (its
--       checkpoint's stored form, client_store.pack_checkpoint), kept as that day's
--       checkpoint, positioned at this event's audit entry,
--       11 a late event's day number, or '': checkpoints of later days are dropped,
--       12 the number n of decisions (0: nothing was decided; more than 1: a late
--       event's own decision and its corrections of later ones),
--       13 .. 12+n the decisions' JSON, each added to the evaluated stream (the audit
--       entry holds them too, compressed),
--       13+n ... optional field/value pairs added to each evaluated stream entry.
-- Every check comes before the first write: a Lua error does not roll back writes.
-- Checking the head as well as the version means a step built on a step that was
-- refused (an earlier event of the same client in the batch) is refused too.
local owner = redis.call('GET', KEYS[5])
if owner and owner ~= ARGV[7] then
  return 'foreign'
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  local digest = redis.call('HGET', KEYS[6], ARGV[1])
  if digest and digest ~= ARGV[8] then
    return 'reused'
  end
  return 'duplicate'
end
local current = redis.call('HMGET', KEYS[1], 'version', 'audit_head')
local version = current[1] or '0'
local head = current[2] or ARGV[3]  -- no head yet: a new client, told by its version
if version ~= ARGV[2] or head ~= ARGV[3] then
  return 'conflict'
end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'version', tonumber(version) + 1,
           'audit_head', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[8])
if not owner then
  redis.call('SET', KEYS[5], ARGV[7])
end
local position = redis.call('XADD', KEYS[3], '*', 'entry', ARGV[5], 'hash', ARGV[6])
if ARGV[11] ~= '' then
  local stale = tonumber(ARGV[11])
  for _, day in ipairs(redis.call('HKEYS', KEYS[7])) do
    if tonumber(day) > stale then
      redis.call('HDEL', KEYS[7], day)
    end
  end
end
if ARGV[9] ~= '' then
  -- Keep the last 7 days' checkpoints, then the first of each week back 42 days
  -- (client_store.checkpoints_kept).
  local newest = tonumber(ARGV[9])
  redis.call('HSET', KEYS[7], ARGV[9], position .. ' ' .. ARGV[10])
  local days = redis.call('HKEYS', KEYS[7])
  local first = {}
  for _, day in ipairs(days) do
    local d = tonumber(day)
    local week = math.floor(d / 7)
    if first[week] == nil or d < first[week] then
      first[week] = d
    end
  end
  for _, day in ipairs(days) do
    local d = tonumber(day)
    if d < newest - 7 and (d < newest - 42 or first[math.floor(d / 7)] ~= d) then
      redis.call('HDEL', KEYS[7], day)
    end
  end
end
local n = tonumber(ARGV[12])
for i = 13, 12 + n do
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[i], unpack(ARGV, 13 + n))
end
return 'applied'
