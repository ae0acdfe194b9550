"""Publisher SDK: publish inbound events from a clinic's Python code and follow them.

The wire contract is a plain `XADD rehabgate:inbound * event <json>` (README), so
any language can publish. This module exists so that Python integrators do not
have to get the details right by hand: the typed builders (`Events`, from
builders.py) make valid events with fresh ids and offset-carrying timestamps;
`Publisher` writes them with the exact stream and field names and afterwards
finds each event's fate: its decision on the client's partition
`progression.evaluated` stream, or its dead letter with the reason. Nothing here
imports the services: a clinic needs the schemas package and Redis, nothing else.

Per-clinic streams and signed events plug in through `stream=` and the `signer`
hook (fields added to each entry): `Publisher(url, stream=clinic_inbound_stream(
"clinic-a"), signer=signing.signer(key))`.

An event that has no decision and no dead letter is not lost: it was recognised
as a duplicate, applied without a decision (contact updates, discharges), deferred
until its client's enrolment arrives, or not read yet. `Publisher.progress` says
which of these an entry is in (from the gatekeeper's consumer group), and
`Publisher.applied` which event ids were applied already (the gatekeeper's
idempotency markers): `rehabgate publish` reports every fate with them.

Clinics outside the trusted network hold no Redis user: `HttpsPublisher(ingest_url,
api_key)` posts the same events to the HTTPS ingest (`POST /v1/events`) and reads
each event's fate from it (`GET /v1/events/{event_id}`), nothing else.

On a Redis Cluster (`Publisher(url, cluster=True)`, or a redis-py `RedisCluster`
client) the streams a fate may appear on sit in different slots, and one XREAD may
not span slots: there each stream gets its own XREAD (see `_Watch.reads`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, cast
from uuid import UUID

import httpx
import redis
import redis.asyncio as aredis
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from .builders import EnvelopeOptions, Events, exercise, now
from .inbound import InboundEvent
from .outbound import ProgressionEvaluated
from .signing import Signer
from .streams import (
    EVENT_FIELD,
    GATEKEEPER_GROUP,
    INBOUND,
    INBOUND_DEAD_LETTER,
    PREFIX,
    TRACEPARENT,
    evaluated_stream,
    partition_of,
    partition_tag,
)

__all__ = [
    "AsyncPublisher",
    "DeadLetterInfo",
    "DecisionTimeout",
    "EnvelopeOptions",
    "Events",
    "Fate",
    "HttpsPublisher",
    "IngestRefused",
    "Progress",
    "Publisher",
    "Signer",
    "exercise",
    "now",
]


@dataclass(frozen=True)
class DeadLetterInfo:
    """An inbound entry the gatekeeper refused: why, and the payload exactly as sent."""

    entry_id: str
    reason: str
    raw: bytes
    source_stream: str
    source_id: str
    dead_lettered_at: str | None


#: What became of a published event: its decision, or its dead letter.
Fate = ProgressionEvaluated | DeadLetterInfo

#: Where an entry is in the gatekeeper's consumer group (`Publisher.progress`):
#: "unread" (no gatekeeper has read it), "pending" (read, not done yet), "deferred"
#: (read and left pending because its client is not enrolled yet: retried until the
#: enrolment arrives, dead-lettered after the last allowed delivery), "done"
#: (acknowledged: decided, dead-lettered, a duplicate or applied without a decision).
Progress = Literal["unread", "pending", "deferred", "done"]


class DecisionTimeout(TimeoutError):
    """No decision and no dead letter in time. The gatekeeper may be down or behind;
    or the event was applied without a decision (`client.contact.updated` and
    `client.discharged` never have one), or it re-sent an event already applied."""


@dataclass(frozen=True)
class _Sent:
    entry_id: str
    event_id: str
    client_id: str | None


#: XREAD's COUNT: entries per stream per read.
_BATCH = 500

#: An XREAD: the streams with their cursors, and its BLOCK in ms (None: no BLOCK).
_Read = tuple[dict[KeyT, StreamIdT], int | None]


@dataclass
class _Watch:
    """What to read next, and the matching of the entries read to the events being
    waited for: a decision by its `cause_event_id`, a dead letter by its source
    entry or its payload's event id. The publishers only run the reads (sync or
    awaited), so the two share everything else."""

    #: On a cluster, how long one XREAD waits on the first stream before the others
    #: are looked at again: a fate on those is seen this much later at most.
    CLUSTER_WAIT_MS = 100

    waiting: list[_Sent]
    cursors: dict[str, str]  # stream -> last entry id read
    dead_letter_stream: str
    source_stream: str
    cluster: bool
    deadline: float  # time.monotonic()
    found: bool = True  # the last round read entries (or there was none yet)

    def reads(self) -> list[_Read]:
        """This round's XREADs; none once every fate is known or time is up.

        One server: a single XREAD of all the streams, blocking until one has
        entries. A cluster refuses an XREAD across slots (CROSSSLOT), and each
        partition's stream and the dead letters are in slots of their own: one XREAD
        per stream, none blocking after a round that found entries; after a round
        that found none, the first (a decision stream: the usual fate) blocks up to
        CLUSTER_WAIT_MS, so waiting costs a few reads a second, not a busy loop.
        """
        left_ms = int((self.deadline - time.monotonic()) * 1000)
        if not self.waiting or left_ms <= 0:
            return []
        block = max(1, min(1000, left_ms))
        if not self.cluster:
            return [({s: c for s, c in self.cursors.items()}, block)]
        each: list[dict[KeyT, StreamIdT]] = [{s: c} for s, c in self.cursors.items()]
        wait = None if self.found else min(block, self.CLUSTER_WAIT_MS)
        return [(each[0], wait)] + [(one, None) for one in each[1:]]

    def take(self, replies: Iterable[Any]) -> list[tuple[str, Fate]]:
        """The (entry id, fate) pairs settled by this round's XREAD replies."""
        settled: list[tuple[str, Fate]] = []
        self.found = False
        for reply in replies:
            for stream, entry_id, fields in _entries(reply):
                self.found = True
                settled += self.feed(stream, entry_id, fields)
        return settled

    def feed(
        self, stream: str, entry_id: str, fields: Mapping[str, bytes]
    ) -> list[tuple[str, Fate]]:
        self.cursors[stream] = entry_id
        fate: Fate
        if stream == self.dead_letter_stream:
            fate = _dead_letter(entry_id, fields)
            raw_id = _json_field(fate.raw, "event_id")
            from_here = fate.source_stream == self.source_stream
            # By the source entry when known: a re-sent event has its own entry and
            # its own fate. By event id only for events published elsewhere.
            matched = [
                s
                for s in self.waiting
                if (from_here and s.entry_id and s.entry_id == fate.source_id)
                or (not (from_here and s.entry_id) and s.event_id and s.event_id == raw_id)
            ]
        else:
            raw = fields.get(EVENT_FIELD, b"")
            if not any(s.event_id and s.event_id.encode() in raw for s in self.waiting):
                return []  # cheap pre-check: most decisions are other clients'
            fate = ProgressionEvaluated.model_validate_json(raw)
            # The gatekeeper applies the first entry of an event id; a later one (a
            # re-send) is a duplicate without a decision of its own.
            matched = [s for s in self.waiting if s.event_id == str(fate.cause_event_id)][:1]
        self.waiting = [s for s in self.waiting if s not in matched]
        return [(s.entry_id, fate) for s in matched]


class _Base:
    """Configuration and bookkeeping shared by the sync and async publishers."""

    MAX_REMEMBERED = 10_000

    def __init__(
        self,
        *,
        partitions: int,
        stream: str,
        dead_letter_stream: str,
        signer: Signer | None,
        skew_ms: int,
        cluster: bool,
    ) -> None:
        self.partitions = partitions
        self.stream = stream
        self.dead_letter_stream = dead_letter_stream
        self.signer = signer
        self.skew_ms = skew_ms
        self.cluster = cluster
        self._sent: OrderedDict[str, _Sent] = OrderedDict()  # by entry id
        self._by_event: dict[str, str] = {}  # event id -> entry id

    def _fields(self, payload: str | bytes, traceparent: str | None) -> dict[FieldT, EncodableT]:
        data = payload.encode() if isinstance(payload, str) else payload
        extra = self.signer(self.stream, data) if self.signer else {}
        fields: dict[FieldT, EncodableT] = {k: v for k, v in extra.items()}
        fields[EVENT_FIELD] = data
        if traceparent:
            fields[TRACEPARENT] = traceparent
        return fields

    def _remember(self, entry_id: bytes | str, payload: str | bytes) -> str:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        event_id = _json_field(payload, "event_id")
        self._sent[entry] = _Sent(entry, event_id, _json_field(payload, "client_id") or None)
        if event_id:
            self._by_event[event_id] = entry
        while len(self._sent) > self.MAX_REMEMBERED:
            _, old = self._sent.popitem(last=False)
            if self._by_event.get(old.event_id) == old.entry_id:
                del self._by_event[old.event_id]
        return entry

    def _sent_for(self, event: InboundEvent | UUID | str) -> _Sent | None:
        if isinstance(event, UUID | str):
            entry = self._by_event.get(str(event))
            return self._sent.get(entry) if entry else None
        entry = self._by_event.get(str(event.event_id))
        known = self._sent.get(entry) if entry else None
        return known or _Sent("", str(event.event_id), event.client_id)

    def _watch(self, sent: list[_Sent], start_ms: int, timeout: float) -> _Watch:
        clients = {s.client_id for s in sent}
        partitions = (
            range(self.partitions)
            if None in clients
            else sorted({partition_of(c, self.partitions) for c in clients if c})
        )
        start = f"{max(start_ms - self.skew_ms, 0)}-0"
        streams = [evaluated_stream(p) for p in partitions] + [self.dead_letter_stream]
        return _Watch(
            list(sent),
            dict.fromkeys(streams, start),
            self.dead_letter_stream,
            self.stream,
            self.cluster,
            time.monotonic() + timeout,
        )

    def _lookup(self, entry_ids: Iterable[str]) -> list[_Sent]:
        return [self._sent.get(e) or _Sent(e, "", None) for e in entry_ids]


class Publisher(_Base):
    """Publish inbound events to Redis and wait for their fate (sync).

    `Publisher("redis://...")` or `Publisher(existing_client)`; for a Redis Cluster
    `Publisher("redis://any-node:6379", cluster=True)` or a `redis.RedisCluster`
    (`cluster` only says how to connect to a URL). `partitions` must
    match the deployment's `REHABGATE_PARTITIONS` (decisions are partitioned by
    client). `stream` is where this clinic publishes (`rehabgate:inbound` today).
    `skew_ms`: how far before the published entry to look for its fate, covering
    clock differences between Redis nodes.
    """

    def __init__(
        self,
        redis_url_or_client: str | redis.Redis | redis.RedisCluster,
        *,
        partitions: int = 1,
        stream: str = INBOUND,
        dead_letter_stream: str = INBOUND_DEAD_LETTER,
        signer: Signer | None = None,
        skew_ms: int = 5_000,
        cluster: bool = False,
    ) -> None:
        self._owned = isinstance(redis_url_or_client, str)
        self.redis = (
            (redis.RedisCluster if cluster else redis.Redis).from_url(redis_url_or_client)
            if isinstance(redis_url_or_client, str)
            else redis_url_or_client
        )
        super().__init__(
            partitions=partitions,
            stream=stream,
            dead_letter_stream=dead_letter_stream,
            signer=signer,
            skew_ms=skew_ms,
            cluster=isinstance(self.redis, redis.RedisCluster),
        )

    def publish(self, event: InboundEvent, traceparent: str | None = None) -> str:
        """XADD the event as JSON in the field `event`; returns the stream entry id.
        `traceparent` (W3C Trace Context): the trace the event belongs to, continued
        by the gatekeeper and the notifier up to the client's message."""
        return self.publish_raw(event.model_dump_json(exclude_none=True), traceparent)

    def publish_raw(self, payload: str | bytes, traceparent: str | None = None) -> str:
        """XADD a JSON document exactly as given (for tools that forward files)."""
        entry_id = cast(bytes, self.redis.xadd(self.stream, self._fields(payload, traceparent)))
        return self._remember(entry_id, payload)

    def wait_for_decision(
        self, event: InboundEvent | UUID | str, timeout: float = 10.0, *, after: str | None = None
    ) -> Fate:
        """The decision caused by `event` (or the id of one), or its dead letter.

        Looks from the moment the event was published by this publisher, so a decision
        made before the call is found too. For an event published elsewhere, pass
        `after=` (its entry id); otherwise only fates from now on are seen.
        Raises `DecisionTimeout` when neither appears within `timeout` seconds.
        """
        sent = self._sent_for(event) or _Sent("", str(event), None)
        start = after or sent.entry_id or _server_now(self.redis.time())
        for _, fate in self._fates([sent], _ms(start), timeout):
            return fate
        raise DecisionTimeout(f"no decision or dead letter for {sent.event_id} in {timeout:g}s")

    def fates(self, entry_ids: Iterable[str], timeout: float = 10.0) -> Iterator[tuple[str, Fate]]:
        """(entry id, fate) for each of these published entries, as they arrive, until
        all are known or `timeout` seconds have passed."""
        sent = self._lookup(entry_ids)
        if sent:
            yield from self._fates(sent, min(_ms(s.entry_id) for s in sent), timeout)

    def _fates(
        self, sent: list[_Sent], start_ms: int, timeout: float
    ) -> Iterator[tuple[str, Fate]]:
        watch = self._watch(sent, start_ms, timeout)
        while reads := watch.reads():
            yield from watch.take([self.redis.xread(s, count=_BATCH, block=b) for s, b in reads])

    def progress(
        self, entry_ids: Iterable[str], group: str = GATEKEEPER_GROUP
    ) -> dict[str, Progress]:
        """Where each of these published entries is in the gatekeeper's consumer group
        (see `Progress`); for entries without a decision or dead letter yet."""
        wanted = list(entry_ids)
        if not wanted:
            return {}
        try:
            groups = cast(list[dict[Any, Any]], self.redis.xinfo_groups(self.stream))
        except redis.ResponseError:  # no stream yet
            groups = []
        info = next((g for g in groups if _text(g.get("name", b"")) == group), None)
        if info is None:
            return dict.fromkeys(wanted, "unread")
        last = _id_order(_text(info.get("last-delivered-id", b"0-0")))
        pipe = self.redis.pipeline(transaction=False)
        for entry in wanted:
            pipe.xpending_range(self.stream, group, min=entry, max=entry, count=1)
        pending = [bool(rows) for rows in pipe.execute()]
        sent = self._lookup(wanted)
        enrolled = self._enrolled([s.client_id for s in sent if s.client_id])
        progress: dict[str, Progress] = {}
        for entry, is_pending, known in zip(wanted, pending, sent, strict=True):
            if is_pending:
                waits = known.client_id is not None and not enrolled.get(known.client_id, True)
                progress[entry] = "deferred" if waits else "pending"
            else:
                progress[entry] = "unread" if _id_order(entry) > last else "done"
        return progress

    def applied(self, events: Iterable[tuple[str, str]]) -> set[str]:
        """Which of these (client id, event id) pairs the gatekeeper has applied already:
        publishing one again is recognised as a duplicate and changes nothing."""
        pairs = list(events)
        if not pairs:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for client_id, event_id in pairs:
            pipe.sismember(f"{self._client_key(client_id)}:processed", event_id)
        return {e for (_, e), seen in zip(pairs, pipe.execute(), strict=True) if seen}

    def _enrolled(self, client_ids: list[str]) -> dict[str, bool]:
        unique = list(dict.fromkeys(client_ids))
        pipe = self.redis.pipeline(transaction=False)
        for client_id in unique:
            pipe.hexists(self._client_key(client_id), "state")
        return {c: bool(found) for c, found in zip(unique, pipe.execute(), strict=True)}

    def _client_key(self, client_id: str) -> str:
        """The gatekeeper's key of a client (services/common/keys.py `ClientKeys`)."""
        tag = partition_tag(partition_of(client_id, self.partitions))
        return f"{PREFIX}:{tag}:client:{client_id}"

    def close(self) -> None:
        if self._owned:
            self.redis.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPublisher(_Base):
    """`Publisher` for asyncio code (redis.asyncio); the same methods, awaited."""

    def __init__(
        self,
        redis_url_or_client: str | aredis.Redis | aredis.RedisCluster,
        *,
        partitions: int = 1,
        stream: str = INBOUND,
        dead_letter_stream: str = INBOUND_DEAD_LETTER,
        signer: Signer | None = None,
        skew_ms: int = 5_000,
        cluster: bool = False,
    ) -> None:
        self._owned = isinstance(redis_url_or_client, str)
        self.redis = (
            (aredis.RedisCluster if cluster else aredis.Redis).from_url(redis_url_or_client)
            if isinstance(redis_url_or_client, str)
            else redis_url_or_client
        )
        super().__init__(
            partitions=partitions,
            stream=stream,
            dead_letter_stream=dead_letter_stream,
            signer=signer,
            skew_ms=skew_ms,
            cluster=isinstance(self.redis, aredis.RedisCluster),
        )

    async def publish(self, event: InboundEvent, traceparent: str | None = None) -> str:
        return await self.publish_raw(event.model_dump_json(exclude_none=True), traceparent)

    async def publish_raw(self, payload: str | bytes, traceparent: str | None = None) -> str:
        entry_id = await self.redis.xadd(self.stream, self._fields(payload, traceparent))
        return self._remember(entry_id, payload)

    # `timeout` (not asyncio.timeout) because it bounds XREAD's server-side BLOCK, and
    # the signature matches the sync publisher's.
    async def wait_for_decision(
        self,
        event: InboundEvent | UUID | str,
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        after: str | None = None,
    ) -> Fate:
        sent = self._sent_for(event) or _Sent("", str(event), None)
        start = after or sent.entry_id or _server_now(await self.redis.time())
        async with aclosing(self._fates([sent], _ms(start), timeout)) as found:
            async for _, fate in found:
                return fate
        raise DecisionTimeout(f"no decision or dead letter for {sent.event_id} in {timeout:g}s")

    async def fates(
        self,
        entry_ids: Iterable[str],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> AsyncIterator[tuple[str, Fate]]:
        sent = self._lookup(entry_ids)
        if sent:
            start = min(_ms(s.entry_id) for s in sent)
            async with aclosing(self._fates(sent, start, timeout)) as found:
                async for item in found:
                    yield item

    async def _fates(
        self, sent: list[_Sent], start_ms: int, wait_s: float
    ) -> AsyncGenerator[tuple[str, Fate]]:
        watch = self._watch(sent, start_ms, wait_s)
        while reads := watch.reads():
            replies = [await self.redis.xread(s, count=_BATCH, block=b) for s, b in reads]
            for item in watch.take(replies):
                yield item

    async def aclose(self) -> None:
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _ms(entry_id: str) -> int:
    """The millisecond part of a stream entry id (`1730000000000-0`)."""
    return int(entry_id.split("-", 1)[0])


def _server_now(reply: Any) -> str:
    """Redis TIME (seconds, microseconds) as an entry id."""
    seconds, micros = reply
    return f"{int(seconds) * 1000 + int(micros) // 1000}-0"


def _json_field(payload: str | bytes, name: str) -> str:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""


def _entries(reply: Any) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """XREAD's reply (RESP2 list or RESP3 map, bytes or decoded) as (stream, id, fields)."""
    streams = reply.items() if isinstance(reply, dict) else (reply or [])
    for stream, rows in streams:
        for entry_id, fields in rows:
            yield (
                _text(stream),
                _text(entry_id),
                {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()},
            )


def _dead_letter(entry_id: str, fields: Mapping[str, bytes]) -> DeadLetterInfo:
    at = fields.get("dead_lettered_at")
    return DeadLetterInfo(
        entry_id=entry_id,
        reason=_text(fields.get("reason", b"")),
        raw=fields.get("raw", b""),
        source_stream=_text(fields.get("source_stream", INBOUND.encode())),
        source_id=_text(fields.get("source_id", b"")),
        dead_lettered_at=_text(at) if at is not None else None,
    )


class IngestRefused(ValueError):
    """The ingest refused a request: `status` (400, 401, 413, 422, 429) and its JSON
    body; for 422 `refused` lists each refused event's `index`, `event_id` and `reason`."""

    def __init__(self, status: int, body: Mapping[str, Any], retry_after: float | None) -> None:
        self.status, self.body, self.retry_after = status, dict(body), retry_after
        self.refused: list[dict[str, Any]] = list(body.get("refused", []))
        reasons = "; ".join(f"{r.get('index')}: {r.get('reason')}" for r in self.refused)
        super().__init__(f"{status} {body.get('error')}: {reasons or body.get('detail')}")


#: The fates `GET /v1/events/{event_id}` answers; the first two may still change.
UNSETTLED = frozenset({"pending", "deferred"})


class HttpsPublisher:
    """Publish inbound events over HTTPS to `rehabgate ingest` with a clinic API key
    (README, "Publishing over HTTPS"), and follow their fates there.

    `publish(event)` returns the entry id; `publish_many(events)` posts up to the
    ingest's batch limit in one request (all or nothing) and returns the entry ids in
    order. A refusal raises `IngestRefused` (429: `retry_after` seconds). `fate(event)`
    is the ingest's answer (`{"fate": ..., "decision"/"reason": ...}`), `None` for an id
    the ingest does not know; `wait_for_fate` polls until it is settled. Re-publishing
    the same event is safe: the same entry id comes back. `signer` (e.g.
    `signing.signer(key)`) sends each event as signed entry fields."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        signer: Signer | None = None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._owned = client is None
        self.http = client or httpx.Client(timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.signer = signer

    def publish(self, event: InboundEvent) -> str:
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[InboundEvent]) -> list[str]:
        items: list[Any] = []
        for event in events:
            payload = event.model_dump_json(exclude_none=True)
            if self.signer is None:
                items.append(json.loads(payload))
            else:
                fields = self.signer(INBOUND, payload.encode())
                items.append({k: _text(v) for k, v in {**fields, EVENT_FIELD: payload}.items()})
        answer = self.http.post(f"{self.base_url}/v1/events", json=items, headers=self.headers)
        body = _body(answer)
        if answer.status_code != 202:
            raise IngestRefused(answer.status_code, body, _retry_after(answer))
        return [str(a["entry_id"]) for a in body["accepted"]]

    def fate(self, event: InboundEvent | UUID | str) -> dict[str, Any] | None:
        event_id = str(event.event_id) if not isinstance(event, UUID | str) else str(event)
        answer = self.http.get(f"{self.base_url}/v1/events/{event_id}", headers=self.headers)
        if answer.status_code == 404:
            return None
        body = _body(answer)
        if answer.status_code != 200:
            raise IngestRefused(answer.status_code, body, _retry_after(answer))
        return body

    def wait_for_fate(
        self, event: InboundEvent | UUID | str, timeout: float = 10.0, every: float = 0.2
    ) -> dict[str, Any]:
        """The event's fate once it is applied, a duplicate or dead-lettered; raises
        `DecisionTimeout` with the last answer when it is still pending or deferred."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.fate(event)
            if found is not None and found.get("fate") not in UNSETTLED:
                return found
            if time.monotonic() >= deadline:
                raise DecisionTimeout(
                    f"fate still {found and found.get('fate')} after {timeout:g}s"
                )
            time.sleep(every)

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> HttpsPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _body(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {"error": f"HTTP {answer.status_code}", "detail": answer.text[:200]}
    return body if isinstance(body, dict) else {"error": "unexpected answer"}


def _retry_after(answer: httpx.Response) -> float | None:
    value = answer.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
