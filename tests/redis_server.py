"""Find a real Redis for integration tests (never a fake), in this order:
REDIS_URL; a testcontainers Redis when a Docker engine answers; the project's
embedded server (the Valkey binary its dependencies ship). A plain module, so
tests import it directly and never from conftest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rehabgate.services.common.redis_server import EmbeddedRedis


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextmanager
def real_redis() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if _docker_engine_answers():
        from testcontainers.community.redis import RedisContainer

        with RedisContainer("redis:7.2") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    with EmbeddedRedis(appendonly=False) as server:
        yield server.url
