"""Admission control: at most `GEOFED_MAX_ACTIVE_REQUESTS` requests are worked on at once; the rest wait in
arrival order, for up to `GEOFED_ADMISSION_WAIT` seconds, then get 503 with Retry-After. A request holds its slot
until its answer starts (a streamed body — a result download — is then sent without one).

Why: a request in progress holds worker threads, upstream connections and a share of the GIL. Under more
concurrent clients than the CPU can serve, letting all of them in makes every one slow — and the upstream
calls of each then run into the upstream timeout because *this* process is behind, not the upstream, which
opens circuits and fails requests that would have succeeded. Waiting before any work costs the client the same
time and fails nobody. `/healthz` and `/metrics` are never queued (probes must see a busy server as alive).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geofed import errors
from geofed.errordocs import error_response
from geofed.observability import REGISTRY
from geofed.settings import Settings

EXEMPT = ("/healthz", "/metrics")
WAITING = Gauge("geofed_requests_waiting", "requests waiting for admission", registry=REGISTRY)
ACTIVE = Gauge("geofed_requests_active", "requests being worked on", registry=REGISTRY)


class ServerBusy(errors.GeofedError):
    status = 503
    code = "ServiceUnavailable"


class Admission:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.wait = settings.admission_wait
        self.slots = asyncio.Semaphore(settings.max_active_requests) if settings.max_active_requests > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slots = self.slots
        if scope["type"] != "http" or slots is None or scope.get("path", "") in EXEMPT:
            await self.app(scope, receive, send)
            return
        WAITING.inc()
        try:
            async with asyncio.timeout(self.wait):
                await slots.acquire()
        except TimeoutError:
            retry = max(1, round(self.wait / 4))
            exc = ServerBusy(f"the server is busy: no request slot freed within {self.wait:g} s; "
                             f"retry after {retry} s")
            response = error_response(exc, scope.get("path", "").startswith("/stac"))
            response.headers["Retry-After"] = str(retry)
            await response(scope, receive, send)
            return
        finally:
            WAITING.dec()
        ACTIVE.inc()
        held = True

        def free() -> None:
            nonlocal held
            if held:
                held = False
                ACTIVE.dec()
                slots.release()

        async def send_and_free(message: Message) -> None:
            if message["type"] == "http.response.start":
                free()  # the answer is made; a slow reader (a large download) must not hold a slot
            await send(message)

        try:
            await self.app(scope, receive, send_and_free)
        finally:
            free()
