"""The Redis client and the FastStream broker, built from settings, for one server
or a Redis Cluster (`REHABGATE_REDIS_CLUSTER=true`; `REDIS_URL` then names any
node, the others are discovered).

Every other module takes the client this module builds, so the cluster choice is
made here once. The code runs unchanged on both because every atomic step (a Lua
script, a MULTI/EXEC) touches one partition's keys, which share a hash tag and so
one slot (schemas/streams.py); pipelines without a transaction may span slots,
and the cluster client splits them per node.

One gap of redis-py's cluster pipeline is closed here: it refuses EVALSHA, and
it does not load a script a node lacks (a standalone pipeline does both), while
the stores run their Lua steps in pipelines. `ClusterClient` remembers the
scripts registered on it and loads them into every primary before the first
pipeline that may use them; after a NOSCRIPT (a node restarted or failed over
and lost its script cache) it loads them again before the next one. The failed
pipeline raises like any Redis error: the batch stays pending and is redelivered,
and the steps are idempotent.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.cluster
from faststream.redis import RedisBroker, RedisClusterBroker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT, ScriptTextT

from .settings import Settings

#: The async client the services use: one server, or a cluster.
RedisClient: TypeAlias = Redis | RedisCluster
#: The blocking client of the command-line tools.
SyncRedisClient: TypeAlias = redis.Redis | redis.cluster.RedisCluster
#: A pipeline of either async client (a transaction, when all its keys share a slot).
RedisPipeline: TypeAlias = Pipeline | ClusterPipeline


class ClusterClient(RedisCluster):
    """A RedisCluster whose pipelines can run registered Lua scripts (see above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts: dict[str, ScriptTextT] = {}
        self.scripts_loaded = False

    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        # (redis-py types the sync ScriptCommands' Script here; the async one is right)
        registered = super().register_script(script)
        self.scripts[registered.sha] = script
        self.scripts_loaded = False
        return registered

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise redis.RedisClusterException("shard_hint is not supported on a cluster")
        # mypy sees an attribute declared by redis-py's command protocols as abstract;
        # the pipeline never reads it.
        return ScriptPipeline(self, transaction)  # type: ignore[abstract]

    async def load_scripts(self) -> None:
        """SCRIPT LOAD of every registered script, into every primary (once)."""
        if not self.scripts_loaded:
            for script in self.scripts.values():
                await self.script_load(script)
            self.scripts_loaded = True


class ScriptPipeline(ClusterPipeline):
    """A cluster pipeline that accepts EVALSHA and first makes sure the scripts exist."""

    cluster_client: ClusterClient

    async def evalsha(
        self, sha: str, numkeys: int, *keys_and_args: KeyT | EncodableT
    ) -> ClusterPipeline:
        """Queued like any command. A coroutine because AsyncScript awaits it, and
        awaiting a cluster pipeline itself would empty its queue."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await self.cluster_client.load_scripts()
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except NoScriptError:
            self.cluster_client.scripts_loaded = False
            raise


def redis_client(settings: Settings, **options: Any) -> RedisClient:
    """The services' async client (`options`: e.g. socket timeouts)."""
    return async_client(_url(settings), settings.redis_cluster, **options)


def async_client(url: str, cluster: bool, **options: Any) -> RedisClient:
    """An async client for `url`; `cluster`: it names a node of a Redis Cluster."""
    if cluster:
        return ClusterClient.from_url(url, **options)
    return Redis.from_url(url, **options)


def sync_client(url: str, cluster: bool, **options: Any) -> SyncRedisClient:
    """A blocking client (the CLI's) for `url`; `cluster`: it names a cluster node."""
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def broker(settings: Settings, **options: Any) -> RedisBroker:
    """The FastStream broker: a RedisClusterBroker on a cluster (`options`: logger,
    parser, middlewares ...)."""
    if settings.redis_cluster:
        return RedisClusterBroker(_url(settings), **options)
    return RedisBroker(_url(settings), **options)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ValueError("no Redis URL: set REDIS_URL")
    return settings.redis_url
