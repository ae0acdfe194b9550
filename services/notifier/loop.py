"""The outbox loop: sends messages whose time has come after their decision was
handled, i.e. those held for quiet hours or a coalescing window, e-mails and
webhooks (kept off the batch handler so a slow receiver never stalls the
stream), and messages whose sender crashed mid-send (lapsed claims).

One small loop per notifier process: every `outbox_poll_s`, or at once when a
batch handler wakes it, it takes each partition's ready messages and sends
them in a background task; a message already being sent by this process is
not taken again. Other processes may pick the same messages: the outbox's
atomic steps let exactly one of them send each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from .process import Notifier


class OutboxLoop:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        poll_s: float,
        batch_size: int,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._notifiers = list(notifiers)
        self._poll_s = poll_s
        self._batch_size = batch_size
        self._log = log
        self._wake = asyncio.Event()
        self._in_flight: set[tuple[int, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking messages; let the round and the sends under way finish for
        up to `grace_s` (a send cut short leaves a claim that lapses and is re-sent
        elsewhere). The loop is asked to stop, not cancelled: cancelling a Redis
        call mid-flight costs its connection, and on Python 3.11 we saw a
        cancelled pipeline call hang."""
        self._stopping = True
        self._wake.set()
        pending = {t for t in (self._runner, *self._tasks) if t is not None}
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now = datetime.now(UTC)
            for notifier in self._notifiers:
                try:
                    ready = await notifier.outbox.ready_ids(now, self._batch_size)
                except Exception as exc:  # Redis away: try again next round
                    self._log.warning("outbox_read_failed", partition=notifier.partition,
                                      error=type(exc).__name__)  # fmt: skip
                    continue
                ids = [m for m in ready if (notifier.partition, m) not in self._in_flight]
                if ids and not self._stopping:
                    self._spawn(notifier, ids, now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()

    def _spawn(self, notifier: Notifier, ids: list[str], now: datetime) -> None:
        keys = {(notifier.partition, m) for m in ids}
        self._in_flight |= keys

        async def send() -> None:
            try:
                counts = await notifier.dispatcher.send(ids, now)
                if counts:
                    self._log.info("outbox_sent", partition=notifier.partition, **counts)
            except Exception as exc:  # logged; the messages stay ready for the next round
                self._log.warning("outbox_send_failed", partition=notifier.partition,
                                  error=type(exc).__name__)  # fmt: skip
            finally:
                self._in_flight -= keys

        task = asyncio.create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
