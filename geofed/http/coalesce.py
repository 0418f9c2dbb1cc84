"""Coalescing across replicas: identical upstream reads in flight on several replicas make one upstream call.

Over a read cache the replicas share (hishel's Redis storage, with `GEOFED_REDIS_URL`): the replica that takes a
short Redis lock for a URL reads the upstream and fills the shared cache; the others wait for the lock to go and
answer from the cache. A wait longer than `GEOFED_SHARED_WAIT`, a lock holder that failed (nothing cached) or
Redis being unreachable end in a direct call: never an error of their own. (Within one replica, identical calls
are already coalesced in `UpstreamClient.request`.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import hishel
import httpx
from redis.exceptions import RedisError

from geofed import shared
from geofed.observability import COALESCED
from geofed.settings import get_settings

LOGGER = logging.getLogger("geofed.http")


class SharedCoalescing(httpx.AsyncBaseTransport):
    """Over a cache transport whose storage the replicas share: one replica at a time reads a given URL."""

    POLL = 0.05  # seconds between looks at the lock while another replica reads

    def __init__(self, name: str, cache: httpx.AsyncBaseTransport, storage: hishel.AsyncBaseStorage,
                 store: shared.Shared, wait: float) -> None:
        self.name = name
        self.cache = cache
        self.storage = storage
        self.store = store
        self.wait = wait

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return await self.cache.handle_async_request(request)
        # hishel's key for this read, set explicitly so that the look-up below is certain to use the same one
        key = hashlib.sha256(f"{request.method} {request.url}".encode()).hexdigest()
        request.extensions = {**request.extensions, "caching": {**request.extensions.get("caching", {}), "key": key}}
        try:
            if await self._stored(key):
                return await self.cache.handle_async_request(request)
            lock = self.store.lock(f"read:{key}", ttl=self.wait + 5)
            if await lock.acquire():
                try:
                    response = await self.cache.handle_async_request(request)
                    await response.aread()  # the shared entry is complete once its body is read: then unlock
                    return response
                finally:
                    try:
                        await lock.release()
                    except RedisError:
                        pass
            COALESCED.labels(self.name).inc()
            deadline = time.monotonic() + self.wait
            while time.monotonic() < deadline and await self.store.held(f"read:{key}"):
                await asyncio.sleep(self.POLL)
        except RedisError as exc:
            LOGGER.warning("shared cache lock unavailable (%s): reading directly", type(exc).__name__)
        # from the shared cache when the other replica's read succeeded; else (it failed, or took too long) this
        # replica's own call
        return await self.cache.handle_async_request(request)

    async def _stored(self, key: str) -> bool:
        try:
            return any(entry.request.method == "GET" for entry in await self.storage.get_entries(key))
        except Exception:  # noqa: BLE001 - a storage hiccup: go through the lock as for a miss
            return False

    async def aclose(self) -> None:
        await self.cache.aclose()


def coalescing(
    name: str, cache: httpx.AsyncBaseTransport, storage: hishel.AsyncBaseStorage
) -> httpx.AsyncBaseTransport:
    """`cache` coalesced across replicas when its storage is the shared (Redis) one; else `cache` itself."""
    store = shared.current() if isinstance(storage, hishel.AsyncRedisStorage) else None
    if store is None:
        return cache
    return SharedCoalescing(name, cache, storage, store, get_settings().shared_wait)
