"""The Redis client and the FastStream broker, built from settings, for one server
or a Redis Cluster (`REHABGATE_REDIS_CLUSTER=true`; `REDIS_URL` then names any
node, the others are discovered).

Every other module takes the client this module builds, so the cluster choice is
made here once. The code runs unchanged on both because every atomic step (a Lua
script, a MULTI/EXEC) touches one partition's keys, which share a hash tag and so
one slot (schemas/streams.py); pipelines without a transaction may span slots,
and the cluster client splits them per node.

Lua steps on a cluster: redis-py's cluster pipeline does not run scripts (it
refuses EVALSHA and never loads a script a node lacks), and how it queues
commands has changed between releases (8.2 broke a subclass that relied on it).
So nothing here touches pipeline internals: `ClusterClient` remembers the URL and
options it was built from and hands out one plain client per node
(`node_client`), through which the gatekeeper's store packs its script calls per
node (gatekeeper/store.py). Which node owns a key comes from the public
`get_node_from_key`; a reply that says the slot moved (MOVED, ASK) is redone
through the cluster client, which follows redirects and refreshes its slot map.
"""

from __future__ import annotations

from typing import Any, TypeAlias, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.cluster
from faststream.redis import RedisBroker, RedisClusterBroker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster

from .settings import CommonSettings

#: The async client the services use: one server, or a cluster.
RedisClient: TypeAlias = Redis | RedisCluster
#: The blocking client of the command-line tools.
SyncRedisClient: TypeAlias = redis.Redis | redis.cluster.RedisCluster
#: A pipeline of either async client (a transaction, when all its keys share a slot).
RedisPipeline: TypeAlias = Pipeline | ClusterPipeline


class ClusterClient(RedisCluster):
    """A RedisCluster that can hand out a plain client for each of its nodes."""

    url: str
    options: dict[str, Any]
    node_clients: dict[str, Redis]

    @classmethod
    def connect(cls, url: str, **options: Any) -> ClusterClient:
        client = cast(ClusterClient, cls.from_url(url, **options))
        client.url, client.options, client.node_clients = url, options, {}
        return client

    def node_client(self, node: ClusterNode) -> Redis:
        """A plain client of `node` (the same credentials, TLS and options), kept for
        reuse; closed with the cluster client."""
        client = self.node_clients.get(node.name)
        if client is None:
            client = Redis.from_url(
                _with_host(self.url, node.host, int(node.port)), **self.options
            )
            self.node_clients[node.name] = client
        return client

    async def aclose(self) -> None:
        for client in self.node_clients.values():
            await client.aclose()
        self.node_clients.clear()
        await super().aclose()


def _with_host(url: str, host: str, port: int) -> str:
    """`url` pointing at host:port instead (its scheme, credentials, path and query kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    return urlunsplit(parts._replace(netloc=netloc))


def redis_client(settings: CommonSettings, **options: Any) -> RedisClient:
    """The services' async client (`options`: e.g. socket timeouts)."""
    return async_client(_url(settings), settings.redis_cluster, **options)


def async_client(url: str, cluster: bool, **options: Any) -> RedisClient:
    """An async client for `url`; `cluster`: it names a node of a Redis Cluster."""
    if cluster:
        return ClusterClient.connect(url, **options)
    return Redis.from_url(url, **options)


def sync_client(url: str, cluster: bool, **options: Any) -> SyncRedisClient:
    """A blocking client (the CLI's) for `url`; `cluster`: it names a cluster node."""
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def broker(settings: CommonSettings, **options: Any) -> RedisBroker:
    """The FastStream broker: a RedisClusterBroker on a cluster (`options`: logger,
    parser, middlewares ...)."""
    if settings.redis_cluster:
        return RedisClusterBroker(_url(settings), **options)
    return RedisBroker(_url(settings), **options)


def _url(settings: CommonSettings) -> str:
    if not settings.redis_url:
        raise ValueError("no Redis URL: set REDIS_URL")
    return settings.redis_url
