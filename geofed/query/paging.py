"""Exact paging over an upstream that pages by offset: directly when the upstream applied the whole query,
by scanning when part of it is evaluated here, and by a bounded full read when the upstream cannot sort."""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from geofed.errors import InvalidParameter
from geofed.query.model import RecordPage
from geofed.query.order import SortKey


@dataclass
class Batch:
    """One upstream page: its records, the upstream's total when it says it, and whether more follow (None:
    the engine infers it from `total`, or from a full page)."""

    records: list[dict[str, Any]]
    total: int | None = None
    more: bool | None = None


Fetch = Callable[[int, int], Awaitable[Batch]]  # (upstream offset, upstream limit) → Batch
Keep = Callable[[dict[str, Any]], bool]


def _more(batch: Batch, offset: int, limit: int) -> bool:
    if batch.more is not None:
        return batch.more and bool(batch.records)
    if batch.total is not None:
        return offset + len(batch.records) < batch.total
    return len(batch.records) == limit


async def direct_page(fetch: Fetch, offset: int, limit: int, hits_only: bool, max_limit: int) -> RecordPage:
    """The upstream applied everything: its offset is ours, its total is `numberMatched`."""
    if hits_only:
        batch = await fetch(0, 1)
        if batch.total is not None:
            return RecordPage([], batch.total, False)
        return await scan_page(fetch, lambda r: True, 0, 0, max_limit, count=True)
    records: list[dict[str, Any]] = []
    at, total, more = offset, None, False
    while len(records) < limit:
        want = min(max_limit, limit - len(records))
        batch = await fetch(at, want)
        records += batch.records
        total = batch.total
        more = _more(batch, at, want)
        at += len(batch.records)
        if not more:
            break
    if total is not None:
        more = total > offset + len(records)
    return RecordPage(records, total, more)


async def scan_page(fetch: Fetch, keep: Keep, offset: int, limit: int, batch_size: int,
                    max_scan: int = 200_000, count: bool = False) -> RecordPage:
    """`limit` matches after `offset` matches, when the upstream cannot evaluate `keep` itself.

    The scan starts at the upstream's first record on every call (an upstream offset cannot be derived from a
    filtered one); the read cache makes that cheap for consecutive pages. Reads one match past the page, so
    `more` is exact and a page is never short while more matches exist. `count` reads everything and counts.
    Scanning more than `max_scan` upstream records → 400 asking for a narrower query.
    """
    seen = 0
    out: list[dict[str, Any]] = []
    at = 0
    while True:
        batch = await fetch(at, batch_size)
        for record in batch.records:
            if not keep(record):
                continue
            if not count and seen >= offset:
                if len(out) == limit:
                    return RecordPage(out, None, True)
                out.append(record)
            seen += 1
        more = _more(batch, at, batch_size)
        at += len(batch.records)
        if not more:
            return RecordPage(out, seen, False)
        if at >= max_scan:
            raise InvalidParameter(
                f"this query needs more than {max_scan} upstream records to be read; narrow it (bbox, datetime or "
                "a property the upstream filters on)", parameter="filter")


async def sorted_page(fetch: Fetch, keep: Keep, key: Callable[[dict[str, Any]], SortKey], offset: int,
                      limit: int, batch_size: int, max_scan: int = 200_000) -> RecordPage:
    """The upstream cannot sort as asked: read every match (bounded by `max_scan` records read), keeping only
    the best offset + limit in memory, and page them. `numberMatched` is exact (everything was read)."""
    keep_n = offset + limit
    best: list[dict[str, Any]] = []
    total = at = 0
    while True:
        batch = await fetch(at, batch_size)
        for record in batch.records:
            if keep(record):
                total += 1
                best.append(record)
                if len(best) > 2 * keep_n + 64:  # bounded memory while reading
                    best = heapq.nsmallest(keep_n, best, key=key)
        more = _more(batch, at, batch_size)
        at += len(batch.records)
        if not more:
            break
        if at >= max_scan:
            raise InvalidParameter(
                f"sorting needs every match read, and this query has more than {max_scan} upstream records; "
                "narrow it or sort by a field the upstream sorts on", parameter="sortby")
    page = heapq.nsmallest(keep_n, best, key=key)[offset:offset + limit]
    return RecordPage(page, total, total > offset + len(page))
