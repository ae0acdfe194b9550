-- Dead-letter one inbound entry, once: a crash between this step and the ack of
-- the entry redelivers it, and the step then finds its marker and writes nothing.
-- KEYS: 1 the dead-letter stream, 2 the entry's marker key (same slot: its hash
--       tag is the stream's whole name).
-- ARGV: 1 marker lifetime in seconds, 2... the dead letter's field/value pairs.
-- Returns 1 when written, 0 when this entry was dead-lettered before.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
