-- Store a client's contact details apart from their health data, once per event.
-- KEYS: 1 client processed-event set, 2 client contact hash, 3 client owner (clinic id),
--       4 client content-digest hash; all share the partition hash tag.
-- ARGV: 1 event_id, 2 contact JSON, 3 the event's clinic id, 4 the event's content digest.
-- A client belongs to the clinic that wrote it first: another clinic's update is
-- refused here, atomically, even when it races that clinic's enrolment.
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[3] then
  return 'foreign'
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  local digest = redis.call('HGET', KEYS[4], ARGV[1])
  if digest and digest ~= ARGV[4] then
    return 'reused'
  end
  return 'duplicate'
end
redis.call('HSET', KEYS[2], 'contact', ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
if not owner then
  redis.call('SET', KEYS[3], ARGV[3])
end
return 'applied'
