"""Bounded retries with exponential backoff and jitter, via stamina.

Why stamina rather than a hand-written loop: it is small, typed and well kept,
does exactly this (exponential backoff plus random jitter, bounded by attempts
*and* total time), reports each scheduled retry to structlog, and can be
switched to no-wait mode in tests. The whole send is additionally bounded by an
asyncio timeout (the deadline), because stamina's time bound only stops new
tries, not a try that hangs; the outbox lease is longer than that deadline, so
a slow but live sender is never overtaken by a second one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import stamina

from .base import PermanentError, TransientError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    deadline_s: float = 60.0
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0


async def send_with_retries(send: Callable[[], Awaitable[None]], policy: RetryPolicy) -> int:
    """Run `send` until it succeeds (returns the number of tries), a try fails for
    good (`PermanentError`), or tries or time run out (`PermanentError` naming the
    last transient reason)."""
    tries = 0
    try:
        async with asyncio.timeout(policy.deadline_s):
            async for attempt in stamina.retry_context(
                on=TransientError,
                attempts=policy.attempts,
                timeout=policy.deadline_s,
                wait_initial=policy.backoff_s,
                wait_max=policy.backoff_max_s,
                wait_jitter=policy.backoff_s,
            ):
                with attempt:
                    tries += 1
                    await send()
    except TransientError as exc:
        raise PermanentError(f"gave up after {tries} tries: {exc.reason}") from exc
    except TimeoutError as exc:
        raise PermanentError(f"gave up after {tries} tries: deadline passed") from exc
    return tries
