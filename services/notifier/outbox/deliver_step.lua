-- Take a due message out of the outbox for sending, and/or record its delivery.
-- One script for the three steps so they share one set of checks:
--   'claim'  (email, webhook; before the send): mark it 'sending' with a lease;
--   'finish' (email, webhook; after the send): write its receipts and forget it;
--   'complete' (the client-messages stream, or a failure before any send): claim,
--            write the message (if any) and the receipts, forget,
--            all in one atomic step, so the stream gets it exactly once.
-- A 'sending' message whose lease ran out (its sender crashed) may be claimed
-- again: the new sender re-sends with the same idempotency key.
-- KEYS: 1 message hash, 2 due zset, 3 sending zset (message id -> lease end),
--       4 open-message hash, 5 client-messages stream, 6 receipts stream.
-- ARGV: 1 step, 2 message id, 3 decisions the caller rendered (n), 4 now (epoch s),
--       5 lease end (epoch s), 6 message JSON ('' for none), 7.. receipt JSONs.
-- Returns 'claimed' | 'reclaimed' | 'completed' | 'finished', or why not:
--   'gone' (sent already), 'changed' (a decision joined since it was read),
--   'not_due', 'busy' (another sender holds the lease).
local step, id = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 'gone'
end
if step == 'finish' then
  if state ~= 'sending' then
    return 'gone'
  end
else
  if redis.call('HGET', KEYS[1], 'n') ~= ARGV[3] then
    return 'changed'
  end
  local now = tonumber(ARGV[4])
  if state == 'queued' then
    local due = redis.call('ZSCORE', KEYS[2], id)
    if due and tonumber(due) > now then
      return 'not_due'
    end
  else
    local lease = redis.call('ZSCORE', KEYS[3], id)
    if lease and tonumber(lease) > now then
      return 'busy'
    end
  end
  -- Claimed: no decision can join any more, and nobody else may send it.
  redis.call('ZREM', KEYS[2], id)
  local client = redis.call('HGET', KEYS[1], 'client')
  local open = redis.call('HGET', KEYS[4], client)
  if open and string.sub(open, 1, #id + 1) == id .. '|' then
    redis.call('HDEL', KEYS[4], client)
  end
  if step == 'claim' then
    redis.call('HSET', KEYS[1], 'state', 'sending')
    redis.call('ZADD', KEYS[3], ARGV[5], id)
    if state == 'queued' then
      return 'claimed'
    end
    return 'reclaimed'
  end
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[5], '*', 'message', ARGV[6])
end
for i = 7, #ARGV do
  redis.call('XADD', KEYS[6], '*', 'event', ARGV[i])
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
if step == 'complete' then
  return 'completed'
end
return 'finished'
