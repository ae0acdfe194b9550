-- Accept one request's events for one inbound stream, atomically and idempotently.
-- KEYS: 1 the inbound stream, 2 .. n+1 each event's ingest record (a hash:
--       entry_id, digest, client_id, event_type), all in the stream's slot (their
--       hash tag is the stream's whole name).
-- ARGV: 1 the records' lifetime in seconds, then 6 per event: content digest,
--       client id, event type, the event JSON, timestamp, signature (the last two
--       empty when unsigned).
-- Every check comes before the first write: an event id already accepted with other
-- content refuses the whole request and writes nothing. A plain XADD, never MAXLEN
-- or MINID: the ingest trims nothing.
-- Returns per event {status, entry id}: status 'new', 'same' (accepted before, same
-- content) or 'reused' (accepted before with other content; then nothing is written
-- and the others are 'unwritten').
local n = #KEYS - 1
local found = {}
local reused = false
for i = 1, n do
  local base = 1 + (i - 1) * 6
  local known = redis.call('HMGET', KEYS[i + 1], 'entry_id', 'digest')
  if known[1] then
    if known[2] ~= ARGV[base + 1] then
      found[i] = {'reused', known[1]}
      reused = true
    else
      found[i] = {'same', known[1]}
    end
  end
end
local out = {}
for i = 1, n do
  local base = 1 + (i - 1) * 6
  if found[i] then
    out[i] = found[i]
  elseif reused then
    out[i] = {'unwritten', ''}
  else
    local id
    if ARGV[base + 5] ~= '' then
      id = redis.call('XADD', KEYS[1], '*', 'timestamp', ARGV[base + 5],
                      'signature', ARGV[base + 6], 'event', ARGV[base + 4])
    else
      id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[base + 4])
    end
    redis.call('HSET', KEYS[i + 1], 'entry_id', id, 'digest', ARGV[base + 1],
               'client_id', ARGV[base + 2], 'event_type', ARGV[base + 3])
    redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
    out[i] = {'new', id}
  end
end
return out
