"""Where store reads run: in a worker thread, never on the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from waymark.store.base import Store

T = TypeVar("T")


async def read(store: Store, call: Callable[[], T]) -> T:
    """Run a read of ``store``; ``call`` takes no arguments (use a lambda)."""
    return await run_in_threadpool(call)
