"""`rehabgate trim`: trim the work streams once, as the services do every
`REHABGATE_TRIM_INTERVAL_S`, and print what was removed. Only entries every
consumer group is done with and older than `REHABGATE_RETENTION_S` go; a stream
without a consumer group is left alone (see services/common/retention.py)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable

from rehabgate.schemas.streams import INBOUND, clinic_inbound_stream, evaluated_stream
from rehabgate.services.common.connections import async_client
from rehabgate.services.common.retention import Trimmed, trim_stream
from rehabgate.services.common.settings import Settings

from .errors import redis_url


def work_streams(partitions: int, clinics: Iterable[str] = ()) -> list[str]:
    """The streams the services consume: inbound (shared, and each clinic's), and
    each partition's decisions."""
    return [
        INBOUND,
        *(clinic_inbound_stream(c) for c in sorted(clinics)),
        *(evaluated_stream(p) for p in range(partitions)),
    ]


async def trim_all(url: str, settings: Settings) -> list[Trimmed]:
    client = async_client(url, settings.redis_cluster)
    try:
        streams = work_streams(settings.partitions, settings.clinics)
        return [await trim_stream(client, s, settings.retention_s) for s in streams]
    finally:
        await client.aclose()


def command(args: argparse.Namespace, settings: Settings) -> int:
    url = redis_url(settings.redis_url, "rehabgate trim")
    trimmed = asyncio.run(trim_all(url, settings))
    for result in trimmed:
        if result.removed is None:
            print(f"{result.stream}: left alone (no consumer group)")
        else:
            print(f"{result.stream}: removed {result.removed} entries (below {result.below})")
    return 0
