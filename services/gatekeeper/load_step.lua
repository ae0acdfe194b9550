-- Read what a batch needs of its clients in one partition, in one call (read only).
-- KEYS: per client, four keys: its state hash, processed-event set, owner and
--       content-digest hash. All share the partition hash tag.
-- ARGV: per client, the number n of the batch's event ids for it, then those n ids.
-- Returns, per client: {state JSON, version, chain head, owner, {1 or 0 per event id:
-- already applied}, {per event id: the digest of the content it was applied with,
-- or nil (not applied, or applied before digests were kept)}}; a missing value is nil.
local out = {}
local at = 1
for k = 1, #KEYS, 4 do
  local n = tonumber(ARGV[at])
  local fields = redis.call('HMGET', KEYS[k], 'state', 'version', 'audit_head')
  local seen = redis.call('SMISMEMBER', KEYS[k + 1], unpack(ARGV, at + 1, at + n))
  local digests = redis.call('HMGET', KEYS[k + 3], unpack(ARGV, at + 1, at + n))
  out[#out + 1] = {fields[1], fields[2], fields[3], redis.call('GET', KEYS[k + 2]), seen,
                   digests}
  at = at + n + 1
end
return out
