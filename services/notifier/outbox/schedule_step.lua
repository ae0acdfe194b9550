-- Put decisions into the outbox, each once: join the client's open message or
-- start a new one, and alert the physios of a flag. Each decision's step is
-- atomic (the whole call is), and sees the steps before it: a batch is one call.
-- KEYS: 1 delivery ledger (decision id -> message id), 2 due zset (message id ->
--       due time), 3 open-message hash (client id -> pointer), 4 physio-alerts
--       stream; then per decision i: 3 + 2i hash of the message to join, 4 + 2i hash
--       of the decision's own new message. All share the partition hash tag.
-- ARGV: per decision i, 9 from 9(i - 1): decision id, message id to join ('' for
--       none), client id, clinic id, decision JSON, due time of an own message
--       (epoch s), its open pointer, physio alert JSON ('' for none), the W3C
--       traceparent its stream entry carried ('' for none; kept as t<n>).
-- Returns per decision {fate, message id, n}: fate 'joined', 'created' or
-- 'duplicate' (the decision was taken before; the message id is the one it went
-- into; n is 0); n is the decision's place in its message (d<n>), so the caller
-- knows the message it built.
local out = {}
for i = 1, #ARGV / 9 do
  local a = 9 * (i - 1)
  local did, join, client = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local taken = redis.call('HGET', KEYS[1], did)
  if taken then
    out[i] = {'duplicate', taken, 0}
  else
    local id, key, fate = join, KEYS[3 + 2 * i], 'joined'
    if join == '' or redis.call('HGET', key, 'state') ~= 'queued' then
      -- Nothing to join, or the message was sent (or is being sent) meanwhile.
      id, key, fate = did, KEYS[4 + 2 * i], 'created'
      redis.call('HSET', key, 'state', 'queued', 'client', client, 'clinic', ARGV[a + 4], 'n', 0)
      redis.call('ZADD', KEYS[2], ARGV[a + 6], id)
      redis.call('HSET', KEYS[3], client, ARGV[a + 7])
    end
    local n = redis.call('HINCRBY', key, 'n', 1)
    redis.call('HSET', key, 'd' .. n, ARGV[a + 5])
    if ARGV[a + 9] ~= '' then
      redis.call('HSET', key, 't' .. n, ARGV[a + 9])
    end
    redis.call('HSET', KEYS[1], did, id)
    if ARGV[a + 8] ~= '' then
      redis.call('XADD', KEYS[4], '*', 'event', ARGV[a + 8])
    end
    out[i] = {fate, id, n}
  end
end
return out
