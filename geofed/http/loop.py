"""One background event loop for all upstream I/O.

pygeoapi calls providers synchronously in worker threads (and instantiates them per request), while
stac-fastapi is async. Running every upstream call on one dedicated loop lets both faces share one async
HTTP layer — one connection pool, one token refresh, one in-flight map for coalescing — instead of a sync
and an async copy of it. Sync callers block their worker thread on `run_sync`; async callers on another
loop await `run_async`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="geofed-upstream-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Runs `coro` on the upstream loop and waits for it (from any thread but the loop's own)."""
    loop = get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("run_sync() called on the upstream loop itself; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Awaits `coro` on the upstream loop from any event loop."""
    loop = get_loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
