-- Put one decision into the outbox, once: join the client's open message or
-- start a new one, and alert the physios of a flag, atomically.
-- KEYS: 1 delivery ledger (decision id -> message id), 2 due zset (message id ->
--       due time), 3 open-message hash (client id -> pointer), 4 hash of the message
--       to join, 5 hash of the decision's own new message, 6 physio-alerts stream.
--       All share the partition hash tag.
-- ARGV: 1 decision id, 2 message id to join ('' for none), 3 client id, 4 clinic id,
--       5 decision JSON, 6 due time of an own message (epoch s), 7 its open pointer,
--       8 physio alert JSON ('' for none).
-- Returns {fate, message id}: fate 'joined', 'created' or 'duplicate' (the decision
-- was taken before; the message id is the one it went into).
local taken = redis.call('HGET', KEYS[1], ARGV[1])
if taken then
  return {'duplicate', taken}
end
local id, key, fate = ARGV[2], KEYS[4], 'joined'
if ARGV[2] == '' or redis.call('HGET', KEYS[4], 'state') ~= 'queued' then
  -- Nothing to join, or the message was sent (or is being sent) meanwhile.
  id, key, fate = ARGV[1], KEYS[5], 'created'
  redis.call('HSET', key, 'state', 'queued', 'client', ARGV[3], 'clinic', ARGV[4], 'n', 0)
  redis.call('ZADD', KEYS[2], ARGV[6], id)
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[7])
end
local n = redis.call('HINCRBY', key, 'n', 1)
redis.call('HSET', key, 'd' .. n, ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], id)
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'event', ARGV[8])
end
return {fate, id}
