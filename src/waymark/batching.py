"""Cutting a sequence into consecutive runs bounded in count and in total size: the SDK's
messages and requests, the collector's transactions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

X = TypeVar("X")


def split_batches(
    items: Sequence[X], sizes: Sequence[int], max_items: int, max_total: int
) -> Iterator[list[X]]:
    """Consecutive runs of ``items`` of at most ``max_items`` and at most ``max_total`` (the
    sum of their ``sizes``); an item too large on its own goes alone."""
    chunk: list[X] = []
    total = 0
    for item, size in zip(items, sizes, strict=True):
        if chunk and (len(chunk) >= max_items or total + size > max_total):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size
    if chunk:
        yield chunk
