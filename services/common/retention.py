"""Retention without loss: trim a work stream only below what every consumer
group still owes, and never inside the retention window.

`XADD ... MAXLEN` and plain trimming drop entries whether or not a group still
has to process them (on Redis 7.0 a trimmed pending entry vanishes from the PEL
without an error), so this module trims with `XTRIM MINID` only, at the lowest
of, for each group of the stream:

- its oldest pending entry (delivered, not yet acknowledged), and
- the id right after its last-delivered id (entries not yet read),

and never above "now minus the retention window" (ids carry the server's
milliseconds), so operators and physios can still inspect recent history.

It all runs in one Lua script: no group can move, and none can be created at 0
(a group recreated after a loss), between reading the groups and trimming. A
stream without a consumer group is never trimmed: nobody is known to have read
it. Audit streams are never trimmed at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from .connections import RedisClient

# Ids are compared as (ms, seq) numbers: exact for any auto-generated id (Lua
# numbers are exact below 2^53). Returns {-1, ''} when there is no group.
_TRIM = """
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return {-1, ''} end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return {-1, ''} end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {tonumber(ms), tonumber(seq)}
end
local function less(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local now = redis.call('TIME')
local floor = {tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1]), 0}
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local unread = parse(f['last-delivered-id'])
  if unread[2] < 2^53 then unread[2] = unread[2] + 1 end
  if less(unread, floor) then floor = unread end
  local oldest_pending = redis.call('XPENDING', stream, f['name'])[2]
  if oldest_pending and less(parse(oldest_pending), floor) then floor = parse(oldest_pending) end
end
if floor[1] < 0 then return {0, '0-0'} end
local threshold = string.format('%d-%d', floor[1], floor[2])
return {redis.call('XTRIM', stream, 'MINID', threshold), threshold}
"""


@dataclass(frozen=True)
class Trimmed:
    """What one trim did: `removed` entries below `below`; `removed` is None when
    the stream was left alone (missing, or no consumer group)."""

    stream: str
    removed: int | None
    below: str | None


async def trim_stream(redis: RedisClient, stream: str, retention_s: float) -> Trimmed:
    """Trim `stream` below what its groups still owe, keeping the last `retention_s`
    seconds whatever they owe. Never MAXLEN; never an audit stream."""
    if stream.endswith(":audit"):
        raise ValueError(f"refusing to trim the audit stream {stream}")
    reply = await redis.eval(_TRIM, 1, stream, int(retention_s * 1000))
    removed, below = cast(tuple[int, bytes], reply)
    if removed == -1:
        return Trimmed(stream, None, None)
    return Trimmed(stream, removed, below.decode())
