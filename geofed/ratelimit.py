"""Per-API-key rate limit (`GEOFED_RATE_LIMIT`, e.g. "60/minute"), with the `limits` library.

A request carrying a configured key (X-API-Key or `Authorization: Bearer`) counts against that key; any other
request (no key, or a key that is not configured, so that made-up keys buy nothing) against its client address.
Counters live in memory (one process), or in Redis when `GEOFED_REDIS_URL` is set (shared by the replicas).
Over the limit → 429 with `Retry-After` (seconds until the window frees a request), OGC or STAC error JSON.
`/healthz` and `/metrics` are never limited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from geofed import errors
from geofed.jobs.access import KeyRing, presented_key
from geofed.limits import error
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
UNLIMITED = ("/healthz", "/metrics")


class TooManyRequests(errors.GeofedError):
    status = 429
    code = "TooManyRequests"


def storage(settings: Settings) -> Storage:
    if settings.redis_url is not None:
        return storage_from_string(settings.redis_url.get_secret_value())
    return MemoryStorage()


class RateLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.item = parse(settings.rate_limit) if settings.rate_limit else None
        self.keys = KeyRing.from_settings(settings)
        self.store = storage(settings) if self.item is not None else None
        self.limiter = MovingWindowRateLimiter(self.store) if self.store is not None else None
        self.remote = settings.redis_url is not None  # a network call: off the event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limiter is None or scope.get("path", "") in UNLIMITED:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        digest = self.keys.matches(presented_key(headers))
        who = f"key:{digest}" if digest else f"addr:{(scope.get('client') or ('?', 0))[0]}"
        allowed = await asyncio.to_thread(self._hit, who) if self.remote else self._hit(who)
        if allowed is not None:
            exc = TooManyRequests(f"rate limit of {self.item} exceeded; retry after {allowed} s")
            response = error(exc, scope.get("path", "").startswith("/stac"))
            response.headers["Retry-After"] = str(allowed)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _hit(self, who: str) -> int | None:
        """None when the request may go on, else the seconds to wait. A storage failure lets requests through
        (logged): a Redis outage must not take the API down."""
        assert self.limiter is not None and self.item is not None
        try:
            if self.limiter.hit(self.item, "geofed", who):
                return None
            reset = self.limiter.get_window_stats(self.item, "geofed", who).reset_time
        except Exception as exc:  # noqa: BLE001 - any storage error: fail open, loudly
            LOGGER.warning("rate limit storage failed (%s); request let through", type(exc).__name__)
            return None
        return max(1, math.ceil(reset - time.time()))
