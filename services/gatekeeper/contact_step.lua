-- Store a client's contact details apart from their health data, once per event.
-- KEYS: 1 client processed-event set, 2 client contact hash (same partition hash tag).
-- ARGV: 1 event_id, 2 contact JSON.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 'duplicate'
end
redis.call('HSET', KEYS[2], 'contact', ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
return 'applied'
