"""Polling for what real processes do in their own time: the one waiting helper of
the tests (sync and async), and the signals they wait for.

Limits are generous on purpose: `make test` must pass on a busy machine (both
cores taken by something else), where a service takes many times longer than on
an idle one. A wait that succeeds returns as soon as its predicate holds, so a
long limit costs nothing when all is well. Never sleep and then assert that
something did not happen: wait for a positive signal that it would have by now
(a later marker processed, a log line written after it, a counter at its final
value), then assert."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis

T = TypeVar("T")

#: The default limit of a wait: what an end-to-end step may take on a busy machine.
TIMEOUT_S = 60.0


def _timed_out(timeout: float, what: str, last: object) -> AssertionError:
    waited = f" waiting for {what}" if what else ""
    return AssertionError(f"timed out after {timeout:g}s{waited} (last answer: {last!r:.300})")


def _gave_up(what: str, reason: object) -> AssertionError:
    waited = f" waiting for {what}" if what else ""
    return AssertionError(f"gave up{waited}: {reason!r:.300}")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = TIMEOUT_S,
    every: float = 0.1,
    what: str = "",
    abort: Callable[[], object] | None = None,
) -> T:
    """The first truthy value of `predicate()`, polled every `every` seconds;
    AssertionError naming `what` after `timeout` seconds, or at once when
    `abort()` is truthy (e.g. `stack.dead`: a service died, nothing will come).
    The predicate is asked once more at the deadline, so a slow last poll does not
    lose its answer."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if abort is not None and (reason := abort()):
            raise _gave_up(what, reason)
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last)
        time.sleep(every)


async def wait_for_async(
    predicate: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    timeout: float = TIMEOUT_S,  # noqa: ASYNC109 - the same signature as wait_for
    every: float = 0.1,
    what: str = "",
) -> T:
    """`wait_for` inside an event loop: the predicate may be a plain function or a
    coroutine function; the loop keeps running between polls."""
    deadline = time.monotonic() + timeout
    while True:
        answer: Any = predicate()
        last = await answer if inspect.isawaitable(answer) else answer
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last)
        await asyncio.sleep(every)


def caught_up(r: redis.Redis, stream: str, group: str) -> bool:
    """The group has read everything in the stream and acknowledged it (by ids, not
    XINFO's `lag`, which is unknown, not 0, after entries were deleted)."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:  # no stream yet
        return False
    info = next((g for g in groups if g["name"].decode() == group), None)
    newest = r.xrevrange(stream, count=1)
    if info is None or not newest:
        return False
    return bool(info["pending"] == 0 and _id(info["last-delivered-id"]) >= _id(newest[0][0]))


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def handled(r: redis.Redis, stream: str, group: str, entry_ids: list[bytes]) -> bool:
    """The group has read each of these entries and acknowledged it, whatever else
    of the stream it still owes (other tests' entries on a shared server)."""
    if not entry_ids:
        return False
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return False
    info = next((g for g in groups if g["name"].decode() == group), None)
    if info is None or _id(info["last-delivered-id"]) < max(map(_id, entry_ids)):
        return False
    first, last = min(entry_ids, key=_id), max(entry_ids, key=_id)
    pending = {p["message_id"] for p in r.xpending_range(stream, group, first, last, 10_000)}
    return not pending & set(entry_ids)


def died(
    stack: Any, services: tuple[str, ...] = ("gatekeeper", "notifier")
) -> Callable[[], list[str]]:
    """An `abort` for waits on a `Stack`: which of `services` has exited. (The ingest
    is left out: these tests do not use it, and it exits when its fixed port is taken.)"""
    return lambda: [name for name in stack.dead() if name in services]
