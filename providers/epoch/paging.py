"""Paging over an upstream without offsets: one live stream per query, resumed page after page.

Epoch has `limit` but no offset or cursor, so page N of a query means reading (and skipping) every plot before
it. A `Cursor` keeps the query's upstream stream open between requests, positioned after the last page served,
so sequential paging reads the upstream once instead of once per page; a request for an earlier page re-opens
the stream and skips forward (skipped lines are split, never parsed).

Cost, per cached query: one open upstream connection (parked: TCP back-pressure stops the upstream from sending
more) and the raw lines of the last page served plus one (≤ limit + 1 lines, ≈ 1.7 KB each). At most
`size` queries are cached (least recently used first out), each for `ttl` idle seconds; an evicted or expired
query only costs a re-read from its first plot. A query's first stream asks Epoch for twice what its page needs
(at least `min_limit`); paging past that re-opens it once asking for up to `max_scan` plots, so a first page
never makes Epoch prepare more than it needs and walking every page reads each plot at most about twice.

Epoch's doc promises no order. Re-opening a stream and skipping the lines already consumed is only right if the
new stream starts with the same plots: the cursor keeps the identity (`uuid`) of every line it consumed (8 bytes
each) and, on a re-open, checks that the skipped lines are the same set (an order-independent digest) and that the
last of them — the row before the resume point — is the same plot. If not (`reordered`, the doc being silent):
"recover" (default) continues exactly: the plots already consumed keep their positions, the rest follow sorted by
`uuid` (a stable key), each batch of them taken from one full re-read; "error" fails the page (502) rather than
serving a plot twice or never; "ignore" trusts the new order (repeats or skips plots if it changed).
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from geofed import errors

Opener = Callable[[int], AsyncIterator[bytes]]  # upstream limit → the NDJSON lines of a new stream
Keep = Callable[[dict[str, Any]], bool]
REORDERED = ("recover", "error", "ignore")
_UUID = re.compile(rb'"uuid"\s*:\s*"([^"]*)"')
_MASK = (1 << 64) - 1


def identity(line: bytes) -> bytes:
    """A plot's `uuid` (the doc: "unique identifier for the plot"), found without parsing the line; the line
    itself when it has none. Not the line's bytes: the same plot may be encoded differently in another answer."""
    found = _UUID.search(line)
    return found.group(1) if found else line


@dataclass
class Page:
    lines: list[bytes]
    more: bool
    total: int | None  # matches of the whole query, once the stream has been read to its end


class Cursor:
    """One query's position in its upstream stream. Lives on the upstream loop; `lock` serialises its users."""

    def __init__(self, opener: Opener, parse: Callable[[bytes], dict[str, Any]], min_limit: int,
                 max_scan: int, reordered: str = "recover") -> None:
        self.opener, self.parse, self.reordered = opener, parse, reordered
        self.keep: Keep | None = None  # the query's local check, handed over with every call (see `page`)
        self.min_limit, self.max_scan = min_limit, max_scan
        self.lock = asyncio.Lock()
        self.used = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.stream: AsyncIterator[bytes] | None = None
        self.upstream_limit = 0  # `limit` the current stream was opened with
        self.read = 0  # upstream lines consumed
        self.matched = 0  # lines that passed `keep`
        self.window: deque[tuple[int, bytes]] = deque()  # contiguous matches ending at index matched - 1
        self.total: int | None = None
        self.ended = False  # the upstream has no more lines for this query
        self.opened_now = False
        self.seen = array("q")  # hash of the identity of each upstream line consumed from a stream, in order
        self.digest = 0  # their sum (mod 2**64): the set of lines a re-open must skip
        self.last = b""  # the identity of the last one: the row before the resume point
        self.sorted_tail = False  # the order changed: the unconsumed plots follow sorted by identity
        self.after: bytes | None = None  # ... the identity of the last of them consumed
        self.buffer: deque[bytes] = deque()  # ... the next of them, read by the last full re-read

    async def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.aclose()  # type: ignore[attr-defined]

    async def page(self, offset: int, limit: int, keep: Keep | None = None) -> Page:
        """Matches [offset, offset + limit) and whether more follow. `keep` is the query's local check (the
        same condition on every call for one cursor: the cache key says so); it is passed per call so that
        whatever it holds lives as long as one request, not as long as the parked stream."""
        self.used = time.monotonic()
        self.keep = keep
        self.opened_now = False
        first = self.window[0][0] if self.window else self.matched
        if offset < first:  # an earlier page: start over
            await self.close()
            self._reset()
        while self.window and self.window[0][0] < offset:
            self.window.popleft()
        want = limit + 1  # one past the page tells whether more follow
        while len(self.window) < want and self.total is None:
            line = await self._next_match()
            if line is None:
                break
            if self.matched - 1 >= offset:
                self.window.append((self.matched - 1, line))
        lines = [line for _, line in list(self.window)[:want]]
        return Page(lines[:limit], len(lines) > limit, self.total)

    async def count(self, keep: Keep | None = None) -> int:
        """Reads to the end (nothing kept) and returns the number of matches."""
        self.used = time.monotonic()
        self.keep = keep
        while self.total is None:
            await self._next_match()
        return self.total

    async def _next_match(self) -> bytes | None:
        while True:
            line = await self._next_line()
            if line is None:
                self.total = self.matched
                return None
            if self.keep is not None and not self.keep(self.parse(line)):
                continue
            self.matched += 1
            return line

    async def _next_line(self) -> bytes | None:
        while True:
            if self.sorted_tail:
                if not self.buffer and not self.ended:
                    await self._refill()
                if not self.buffer:
                    return None
                self.read += 1
                return self.buffer.popleft()
            if self.stream is None and not self.ended:
                await self._open()
                continue
            if self.stream is None:
                return None
            try:
                line = await anext(self.stream)
            except StopAsyncIteration:
                self.stream = None
                self.ended = self.read < self.upstream_limit  # else it stopped at its limit: re-open, larger
                continue
            except BaseException:
                self.stream = None
                raise
            self.read += 1
            self.last = identity(line)
            mark = hash(self.last)
            self.seen.append(mark)
            self.digest = (self.digest + mark) & _MASK
            return line

    async def _open(self) -> None:
        """(Re-)opens the stream with a larger limit and skips the lines already consumed."""
        if self.upstream_limit >= self.max_scan:
            raise errors.InvalidParameter(
                f"this query needs more than {self.max_scan} Epoch plots to be read; narrow it (datetime, "
                "collection_id, facility_id or another property) or page less deep",
                parameter="offset",
            )
        # First stream: what the page needs (twice, or `min_limit`). Paging past it means the client is walking
        # the query: the second stream asks for everything (`max_scan`), so nothing is re-read a third time.
        wanted = self.max_scan if self.upstream_limit else max(self.min_limit, 2 * (self.read + 1))
        self.upstream_limit = min(self.max_scan, wanted)
        self.stream = self.opener(self.upstream_limit)
        self.opened_now = True
        digest, last, skipped = 0, b"", 0
        for _ in range(self.read):
            try:
                line = await anext(self.stream)
            except StopAsyncIteration:  # fewer plots than before: the upstream's data changed under us
                break
            skipped += 1
            last = identity(line)
            digest = (digest + hash(last)) & _MASK
        if skipped == self.read and digest == self.digest and last == self.last:
            return
        if self.reordered == "ignore":
            if skipped < self.read:
                self.stream, self.ended = None, True
            return
        await self.close()
        if self.reordered == "error":
            raise errors.UpstreamError("Epoch returned the plots in another order than for the previous page; "
                                       "read the query again from its first page", upstream="epoch")
        self.sorted_tail = True

    async def _refill(self) -> None:
        """The next batch of the plots not consumed yet, in identity order, from one full re-read."""
        self.opened_now = True
        consumed = set(self.seen)
        batch = max(self.min_limit, 1)
        found: list[tuple[bytes, bytes]] = []
        read = 0
        async with aclosing(self.opener(self.max_scan)) as stream:
            async for line in stream:
                read += 1
                ident = identity(line)
                if (self.after is None or ident > self.after) and hash(ident) not in consumed:
                    found.append((ident, line))
                    if len(found) >= 2 * batch:
                        found = sorted(found)[:batch]
        if read >= self.max_scan:
            raise errors.InvalidParameter(
                f"this query needs more than {self.max_scan} Epoch plots to be read; narrow it", parameter="offset")
        found = sorted(found)[:batch]
        self.ended = len(found) < batch
        self.buffer.extend(line for _, line in found)
        if found:
            self.after = found[-1][0]


class CursorCache:
    """Module-level (providers are built per request), bounded by `size` and idle `ttl` seconds."""

    def __init__(self, size: int = 8, ttl: float = 60.0) -> None:
        self.size, self.ttl = size, ttl
        self._cursors: dict[Any, Cursor] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def configure(self, size: int, ttl: float) -> None:
        self.size, self.ttl = max(0, size), ttl

    def __len__(self) -> int:
        return len(self._cursors)

    def cursor(self, key: Any, make: Callable[[], Cursor]) -> Cursor:
        cursor = self._cursors.pop(key, None)
        if cursor is None:
            cursor = make()
        self._cursors[key] = cursor  # most recently used last
        self._evict(keep=key)
        return cursor

    def forget(self, key: Any, cursor: Cursor) -> None:
        if self._cursors.get(key) is cursor:
            del self._cursors[key]

    async def drop(self, key: Any, cursor: Cursor) -> None:
        self.forget(key, cursor)
        await cursor.close()

    def _evict(self, keep: Any = None) -> None:
        now = time.monotonic()
        for key, cursor in list(self._cursors.items()):
            if key == keep or cursor.lock.locked():
                continue
            if len(self._cursors) > self.size or now - cursor.used > self.ttl:
                del self._cursors[key]
                task = asyncio.get_running_loop().create_task(cursor.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        if self._cursors and self._sweep is None:
            def sweep() -> None:
                self._sweep = None
                self._evict()

            self._sweep = asyncio.get_running_loop().call_later(self.ttl + 1, sweep)

    async def count(self, key: Any, make: Callable[[], Cursor], keep: Keep | None = None) -> int:
        cursor = self.cursor(key, make)
        async with cursor.lock:
            try:
                return await cursor.count(keep)
            except BaseException:
                await self.drop(key, cursor)
                raise
            finally:
                cursor.keep = None

    async def page(self, key: Any, make: Callable[[], Cursor], offset: int, limit: int,
                   keep: Keep | None = None) -> Page:
        """A page through the cached cursor; a resumed stream that broke is re-read once from the start."""
        for attempt in range(2):
            cursor = self.cursor(key, make)
            async with cursor.lock:
                try:
                    page = await cursor.page(offset, limit, keep)
                except errors.UpstreamError:
                    await self.drop(key, cursor)
                    if cursor.opened_now or attempt:
                        raise
                    continue  # e.g. the upstream dropped our parked connection: start again, once
                except BaseException:
                    await self.drop(key, cursor)
                    raise
                finally:
                    cursor.keep = None
            if self.size == 0:
                await self.drop(key, cursor)
            return page
        raise AssertionError("unreachable")
