"""`rehabgate health SERVICE`: exit 0 when the service is consuming, for healthchecks.

Healthy means: Redis answers, and one of the service's processes wrote its
heartbeat (all subscribers running) within the last `max_idle_s` seconds. "Its"
processes are those whose consumer name starts with `REHABGATE_CONSUMER` when
set, else with this host's name (the default consumer name is hostname-pid, and
a container has its own hostname).
"""

from __future__ import annotations

import socket
import time
from typing import cast

import redis

from rehabgate.services.common.connections import sync_client
from rehabgate.services.common.heartbeat import heartbeat_key


def check(
    url: str,
    service: str,
    consumer_prefix: str | None = None,
    max_idle_s: float = 10.0,
    cluster: bool = False,
) -> tuple[bool, str]:
    """`cluster`: `url` names a node of a Redis Cluster (REHABGATE_REDIS_CLUSTER)."""
    prefix = consumer_prefix or socket.gethostname()
    client = sync_client(url, cluster, socket_timeout=2)
    try:
        beats = cast(dict[bytes, bytes], client.hgetall(heartbeat_key(service)))
    except redis.RedisError as exc:
        return False, f"redis unreachable: {exc}"
    finally:
        client.close()
    now_ms = time.time() * 1000
    live = [name.decode() for name, at in beats.items()
            if name.decode().startswith(prefix) and now_ms - int(at) < max_idle_s * 1000]  # fmt: skip
    if not live:
        return False, f"no {service} process {prefix}* beat in the last {max_idle_s:g}s"
    return True, f"{service} consuming ({len(live)} live: {', '.join(sorted(live))})"
