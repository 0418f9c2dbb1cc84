"""The one ASGI app: pygeoapi (OGC API) at `/`, stac-fastapi (STAC API) at `/stac`, `/healthz`, `/metrics`.

Order matters: pygeoapi reads its config at import, so settings → simulators (demo mode) → rendered config
and OpenAPI → import pygeoapi's app → mount. Mounted sub-apps get no lifespan events: shared resources (the
thread pool, upstream clients, the job poller) start and stop in this root app's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from geofed import __version__, errors, registry, upstreams
from geofed.admission import Admission
from geofed.errordocs import error_response
from geofed.limits import RequestLimits
from geofed.observability import HEALTH, REGISTRY, REQUEST_SECONDS, REQUESTS, route_label
from geofed.ratelimit import RateLimit
from geofed.settings import Settings, get_settings

LOGGER = logging.getLogger("geofed")


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = route_label(scope.get("path", ""))
            REQUESTS.labels(route, scope["method"], str(status["code"])).inc()
            REQUEST_SECONDS.labels(route, scope["method"]).observe(time.monotonic() - started)


class ErrorBoundary:
    """Last line of defence: anything that escapes a face becomes a JSON 4xx/5xx, never a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = {"done": False, "held": False, "status": 0}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                # a router's or mounted app's own plain-text page (Starlette's 404 for a path no route matches,
                # its 500, e.g. pygeoapi's): replaced by an error document below
                status = message["status"]
                if (status >= 500 or status == 404) and headers.get(b"content-type", b"").startswith(b"text/plain"):
                    started["held"], started["status"] = True, status
                    return
                started["done"] = True
            if not started["held"]:
                await send(message)

        exc: Exception | None = None
        try:
            await self.app(scope, receive, watch)
        except Exception as raised:
            exc = raised
        if exc is None and not started["held"]:
            return
        if exc is not None and started["done"]:
            raise exc
        stac = scope.get("path", "").startswith("/stac")
        if exc is None and started["status"] == 404:
            await error_response(errors.NotFound("nothing is served at this path"), stac)(scope, receive, send)
            return
        if exc is None or not isinstance(exc, errors.GeofedError):
            LOGGER.error("unhandled error on %s", scope.get("path"), exc_info=exc)
        if isinstance(exc, errors.GeofedError):
            response = error_response(exc, stac)
        else:
            response = error_response(errors.GeofedError("internal error; see the server log"), stac)
        await response(scope, receive, send)


def _healthz(settings: Settings) -> Callable[[Request], Any]:
    async def healthz(request: Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "demo": settings.demo,
            "upstreams": {name: HEALTH[name].as_dict() for name in registry.names() if name in HEALTH},
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return healthz


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _extensions(settings: Settings) -> list[dict[str, Any]]:
    """The faces and services mounted beside pygeoapi: each returns routes / middleware / lifespan hooks.
    Imported here, at the composition root, so that the layers below never import upward."""
    from geofed.alerts.web import extension as alerts_extension
    from geofed.jobs.web import extension as jobs_extension
    from stac_bridge.app import extension as stac_extension

    return [jobs_extension(settings), alerts_extension(settings), stac_extension(settings)]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    # pygeoapi's l10n warns "unknown locale 'type'" for every JSON-schema dict inside process metadata
    logging.getLogger("pygeoapi.l10n").setLevel(logging.ERROR)
    # httpx logs every upstream URL at INFO; geofed's own metrics and /healthz cover that without the noise
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    from geofed import shared

    if problem := shared.startup_problem(settings):
        raise SystemExit(f"geofed: refusing to start: {problem}")  # one line on stderr, exit status 1
    if note := shared.token_sharing_note(settings):
        LOGGER.warning(note)
    from geofed.demo import start_simulators

    simulator_server = start_simulators(settings)
    upstreams.init_health(settings)
    if not upstreams.enabled(settings):
        LOGGER.warning("no upstream is enabled: GEOFED_DEMO=0 and no GEOFED_<UPSTREAM>_URL is set, so every "
                       "collection and process is absent; set an upstream URL or GEOFED_DEMO=1")

    from geofed import pygeoapi_config

    pygeoapi_config.write(settings)
    from geofed.ogc import fastjson

    fastjson.install()
    from geofed.ogc import conformance

    conformance.install()
    from geofed.ogc import workarounds

    workarounds.install()
    import pygeoapi.starlette_app as pygeoapi_app  # reads the config written above

    extensions = _extensions(settings)
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz(settings)),
        Route("/metrics", metrics),
    ]
    for ext in extensions:
        routes.extend(ext.get("routes", []))  # before the pygeoapi mount, so they take precedence
    routes.append(Mount("/", app=pygeoapi_app.APP))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="geofed-worker")
        )
        async with AsyncExitStack() as stack:
            for ext in extensions:
                if ext.get("lifespan") is not None:
                    await stack.enter_async_context(ext["lifespan"](app))
            yield
        await asyncio.to_thread(upstreams.close_all)
        if simulator_server is not None:
            simulator_server.stop()

    middleware = [
        Middleware(ErrorBoundary),
        Middleware(MetricsMiddleware),
        Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["*"],
        ),
        Middleware(RateLimit, settings=settings),  # issue 15: 429 per API key, before any work
        Middleware(Admission, settings=settings),  # issue 15: a bounded number of requests in progress
        Middleware(RequestLimits, settings=settings),  # issue 15: 413 / bounded filters, before pygeoapi
    ]
    for ext in extensions:
        middleware.extend(ext.get("middleware", []))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.simulators = simulator_server
    return app
