"""The one ASGI app: pygeoapi (OGC API) at `/`, stac-fastapi (STAC API) at `/stac`, `/healthz`, `/metrics`.

Order matters: pygeoapi reads its config at import, so settings → simulators (demo mode) → rendered config
and OpenAPI → import pygeoapi's app → mount. Mounted sub-apps get no lifespan events: shared resources (the
thread pool, upstream clients, the job poller) start and stop in this root app's lifespan.
"""

from __future__ import annotations

import asyncio
import importlib
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
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from geofed import __version__, errors, upstreams
from geofed.observability import HEALTH, REGISTRY, REQUEST_SECONDS, REQUESTS, route_label
from geofed.settings import UPSTREAMS, Settings, get_settings

LOGGER = logging.getLogger("geofed")

# Extension points filled by later layers: (module, attribute) pairs looked up at app creation, so the
# foundation does not import upward. Each returns extra routes / middleware / lifespan hooks when present.
EXTENSIONS: list[tuple[str, str]] = [
    ("geofed.jobs.web", "extension"),
    ("stac_bridge.app", "extension"),
]


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


def error_response(exc: errors.GeofedError, stac: bool = False) -> JSONResponse:
    """OGC exception JSON (`type`/`title`/`status`/`detail` + pygeoapi's `code`/`description`) or STAC error JSON."""
    if stac:
        body: dict[str, Any] = {"code": exc.code, "description": exc.message}
    else:
        body = {"type": exc.code, "title": exc.code, "status": exc.status, "detail": exc.message, **exc.to_dict()}
    if exc.upstream:
        body["upstream"] = exc.upstream
    return JSONResponse(body, status_code=exc.status)


class ErrorBoundary:
    """Last line of defence: anything that escapes a face becomes a JSON 4xx/5xx, never a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = {"done": False}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started["done"]:
                raise
            stac = scope.get("path", "").startswith("/stac")
            if isinstance(exc, errors.GeofedError):
                response = error_response(exc, stac)
            else:
                LOGGER.exception("unhandled error on %s", scope.get("path"))
                response = error_response(errors.GeofedError("internal error; see the server log"), stac)
            await response(scope, receive, send)


def _healthz(settings: Settings) -> Callable[[Request], Any]:
    async def healthz(request: Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "demo": settings.demo,
            "upstreams": {name: HEALTH[name].as_dict() for name in UPSTREAMS if name in HEALTH},
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return healthz


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _load_extensions(settings: Settings) -> list[dict[str, Any]]:
    found = []
    for module_name, attr in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        factory = getattr(module, attr, None)
        if factory is not None:
            found.append(factory(settings))
    return found


def start_simulators(settings: Settings) -> Any:
    """Demo mode: every upstream without a configured URL is served by its simulator on loopback."""
    if not settings.demo:
        return None
    from simulators import available
    from simulators.server import SimulatorServer

    wanted = [n for n in available() if not settings.upstream_url(n)]
    if not wanted:
        return None
    server = SimulatorServer(port=settings.simulator_port, names=wanted).start()
    upstreams.set_simulated(server.base_urls)
    LOGGER.info("demo mode: simulators for %s on %s", ", ".join(wanted), f"127.0.0.1:{server.port}")
    return server


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    # pygeoapi's l10n warns "unknown locale 'type'" for every JSON-schema dict inside process metadata
    logging.getLogger("pygeoapi.l10n").setLevel(logging.ERROR)
    # httpx logs every upstream URL at INFO; geofed's own metrics and /healthz cover that without the noise
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    simulator_server = start_simulators(settings)
    upstreams.init_health(settings)

    from geofed import pygeoapi_config

    pygeoapi_config.write(settings)
    from geofed.ogc import fastjson

    fastjson.install()
    import pygeoapi.starlette_app as pygeoapi_app  # reads the config written above

    extensions = _load_extensions(settings)
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
    ]
    for ext in extensions:
        middleware.extend(ext.get("middleware", []))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.simulators = simulator_server
    return app
