-- Take due messages out of the outbox for sending, and/or record their delivery.
-- One script for the three steps so they share one set of checks:
--   'claim'  (email, webhook; before the send): mark it 'sending' with a lease;
--   'finish' (email, webhook; after the send): write its receipts and forget it;
--   'complete' (the client-messages stream, or a failure before any send): claim,
--            write the message (if any) and the receipts, forget,
--            all in one atomic step, so the stream gets it exactly once.
-- A 'sending' message whose lease ran out (its sender crashed) may be claimed
-- again: the new sender re-sends with the same idempotency key.
-- One call takes the step for several messages, each atomically (the whole call is).
-- KEYS: 1 due zset, 2 sending zset (message id -> lease end), 3 open-message hash,
--       4 client-messages stream, 5 receipts stream; then 5 + i: message i's hash.
-- ARGV: 1 step, 2 now (epoch s), 3 lease end (epoch s); then per message: its id,
--       the decisions the caller rendered (n), its JSON ('' for none), its W3C
--       traceparent ('' for none: the stream entry then has no such field), the
--       number of receipts r, and r receipt JSONs.
-- Returns per message 'claimed' | 'reclaimed' | 'completed' | 'finished', or why
-- not: 'gone' (sent already), 'changed' (a decision joined since it was read),
--   'not_due', 'busy' (another sender holds the lease).
local step, now, lease_end = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local function deliver(key, id, n, message, traceparent, first_receipt, last_receipt)
  local state = redis.call('HGET', key, 'state')
  if not state then
    return 'gone'
  end
  if step == 'finish' then
    if state ~= 'sending' then
      return 'gone'
    end
  else
    if redis.call('HGET', key, 'n') ~= n then
      return 'changed'
    end
    if state == 'queued' then
      local due = redis.call('ZSCORE', KEYS[1], id)
      if due and tonumber(due) > now then
        return 'not_due'
      end
    else
      local lease = redis.call('ZSCORE', KEYS[2], id)
      if lease and tonumber(lease) > now then
        return 'busy'
      end
    end
    -- Claimed: no decision can join any more, and nobody else may send it.
    redis.call('ZREM', KEYS[1], id)
    local client = redis.call('HGET', key, 'client')
    local open = redis.call('HGET', KEYS[3], client)
    if open and string.sub(open, 1, #id + 1) == id .. '|' then
      redis.call('HDEL', KEYS[3], client)
    end
    if step == 'claim' then
      redis.call('HSET', key, 'state', 'sending')
      redis.call('ZADD', KEYS[2], lease_end, id)
      if state == 'queued' then
        return 'claimed'
      end
      return 'reclaimed'
    end
  end
  if message ~= '' and traceparent ~= '' then
    redis.call('XADD', KEYS[4], '*', 'message', message, 'traceparent', traceparent)
  elseif message ~= '' then
    redis.call('XADD', KEYS[4], '*', 'message', message)
  end
  for i = first_receipt, last_receipt do
    redis.call('XADD', KEYS[5], '*', 'event', ARGV[i])
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if step == 'complete' then
    return 'completed'
  end
  return 'finished'
end

local out, a = {}, 4
for i = 1, #KEYS - 5 do
  local receipts = tonumber(ARGV[a + 4])
  out[i] = deliver(KEYS[5 + i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], a + 5,
                   a + 4 + receipts)
  a = a + 5 + receipts
end
return out
