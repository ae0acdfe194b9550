"""`rehabgate health SERVICE`: exit 0 when the service is consuming, for healthchecks.

Healthy means: Redis answers, the service's consumer group exists, and one of
its consumers polled within the last `max_idle_s` seconds. "Its" consumers are
those named after `REHABGATE_CONSUMER` when set, else after this host (the
default consumer name is hostname-pid, and a container has its own hostname).
"""

from __future__ import annotations

import socket

import redis

from rehabgate.schemas.streams import GATEKEEPER_GROUP, INBOUND, NOTIFIER_GROUP, evaluated_stream

STREAMS = {
    "gatekeeper": (INBOUND, GATEKEEPER_GROUP),
    "notifier": (evaluated_stream(0), NOTIFIER_GROUP),
}


def check(
    url: str, service: str, consumer_prefix: str | None = None, max_idle_s: float = 10.0
) -> tuple[bool, str]:
    stream, group = STREAMS[service]
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.ping()
        consumers = client.xinfo_consumers(stream, group)
    except redis.ResponseError as exc:
        return False, f"consumer group {group} on {stream}: {exc}"
    except redis.RedisError as exc:
        return False, f"redis unreachable: {exc}"
    prefix = consumer_prefix or socket.gethostname()
    live = [c for c in consumers if c["name"].decode().startswith(prefix)
            and c["idle"] < max_idle_s * 1000]  # fmt: skip
    if not live:
        return False, f"no consumer {prefix}* of {group} polled in the last {max_idle_s:g}s"
    return True, f"{service} consuming ({len(live)} live consumers named {prefix}*)"
