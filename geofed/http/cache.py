"""The TTL read cache of an upstream client (hishel), layered over the client's own transport."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import hishel
import httpx
from hishel.httpx import AsyncCacheTransport

from geofed.http.coalesce import coalescing

_cache_dir: Path | None = None
# set by `fresh_reads()`: upstream calls made in this context bypass the TTL cache (e.g. the alerts watcher,
# which must see what is new since its last poll, not a copy up to `cache_ttl` old)
FRESH: ContextVar[bool] = ContextVar("geofed_fresh_reads", default=False)


@contextmanager
def fresh_reads() -> Iterator[None]:
    token = FRESH.set(True)
    try:
        yield
    finally:
        FRESH.reset(token)


def private_cache_path(name: str) -> Path:
    """A cache file private to this client and process.

    hishel's SQLite storage has no in-memory mode (":memory:" becomes a *file* of that name under
    `.cache/hishel`, shared by every client and process: "database is locked" under load), so each client gets
    its own file in a per-process temporary directory, removed at exit. Shared caching is what
    `GEOFED_REDIS_URL` is for.
    """
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix=f"geofed-cache-{os.getpid()}-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.sqlite"


def cached_client(
    name: str, transport: httpx.AsyncBaseTransport, ttl: float, storage: hishel.AsyncBaseStorage | None,
    **common: Any,
) -> httpx.AsyncClient:
    """An httpx client that answers repeated reads from the cache and sends the rest through `transport`."""
    storage = storage or hishel.AsyncSqliteStorage(database_path=private_cache_path(name), default_ttl=ttl)
    cache = AsyncCacheTransport(next_transport=transport, storage=storage)
    return httpx.AsyncClient(transport=coalescing(name, cache, storage), **common)  # across replicas (Redis)


def from_cache(response: httpx.Response) -> bool:
    caching = response.extensions.get("caching")
    return bool(caching and caching.get("from_cache"))
