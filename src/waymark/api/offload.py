"""Where store calls run: on the event loop when that is cheaper, else in a worker thread.

Handing a call to a worker thread and back costs tens of microseconds of CPU (more
on virtual machines, where waking a thread is a slow system call), which is more
than a SQLite read of a summary takes. Stores whose reads are local and quick say so
(:attr:`waymark.store.base.Store.inline_reads`) and their reads run inline; reads
that may wait on a network (PostgreSQL) and all writes go to the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from waymark.store.base import Store

T = TypeVar("T")


async def read(store: Store, call: Callable[[], T]) -> T:
    """Run a read of ``store``; ``call`` takes no arguments (use a lambda)."""
    if store.inline_reads:
        return call()
    return await run_in_threadpool(call)
