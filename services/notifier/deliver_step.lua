-- Deliver one client message on the client-messages stream, once per decision.
-- KEYS: 1 delivery ledger hash (decision id -> message id), 2 client-messages stream,
--       3 receipts stream. All share the partition hash tag.
-- ARGV: 1 decision id, 2 message JSON, 3 receipt JSON.
-- The ledger write, the message and its receipt land together or not at all,
-- so a crash or a redelivery can never produce a second message.
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then
  return 'duplicate'
end
redis.call('XADD', KEYS[2], '*', 'message', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'event', ARGV[3])
return 'delivered'
