"""Giving memory back to the operating system after a huge entry.

A 20 MB stream entry is read, refused and dropped, but glibc's allocator keeps
the freed pages for reuse, so the process's resident memory stays at its peak
(issue 15 saw 787 MB after a 28 MB entry). `malloc_trim` returns free pages to
the system; it is glibc's, so elsewhere this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

#: Batches whose entries together are larger than this release memory afterwards.
LARGE_BATCH_BYTES = 1 << 20


def _trimmer() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return lambda: None
    return lambda: trim(0)


release_freed_memory = _trimmer()


def release_soon(delay_s: float = 1.0) -> None:
    """Release freed memory shortly, once the batch's handler and message are gone."""
    asyncio.get_running_loop().call_later(delay_s, release_freed_memory)
