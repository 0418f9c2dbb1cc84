"""Simulator of the CarbonMapper Data Platform API (`../shared/upstreams/carbonmapper.md`).

Serves, relative to its service root: token pair/refresh/verify, the REST catalog (plumes/annotated, plume,
sources.geojson, source, source/plume/name, scenes/annotated, asset) and the STAC API at `/api/v1/stac/`,
from a catalog generated once per app from the seed (>= 5 000 plumes at real hot spots, every gas, sector and
instrument of the enums; see `data.py`).

Configuration (`create_app(..., key=value)`; every key is a choice where the doc is silent):
- `min_plumes` (5200): size of the generated catalog;
- `rate_limit_per_minute` (None = unlimited): beyond it a client (token subject, else address) gets 429 with
  `Retry-After` in seconds; also settable at run time with `POST /_sim/ratelimit {"per_minute": N}`;
- `access_ttl` (3600 s) / `refresh_ttl` (86400 s): token lifetimes; `POST /_sim/tokens/expire` expires the
  access tokens, `POST /_sim/refresh/expire` the refresh tokens;
- `POST /_sim/plumes {"lon": .., "lat": ..}`: a new plume published now (demos and alert tests);
- `strict_optional_auth` (True): an invalid or expired token sent to an anonymous-capable route gets 401;
- `default_limit` (10), `max_limit` (1000), `scene_default_cloud_max` (25), `scene_require_assessed` (True),
  `source_time_properties` (True), `stac_sortby` (False), `stac_max_limit` (1000): see `rest.py` and `stac.py`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.carbonmapper import rest, stac
from simulators.carbonmapper.common import RateLimiter, public
from simulators.carbonmapper.data import add_plume, generate
from simulators.framework import SimulatorState, TokenStore, create_simulator_app

DEFAULTS: dict[str, Any] = {
    "min_plumes": 5200,
    "rate_limit_per_minute": None,
    "access_ttl": 3600.0,
    "refresh_ttl": 86400.0,
    "strict_optional_auth": True,
    "default_limit": 10,
    "max_limit": 1000,
    "scene_default_cloud_max": 25,
    "scene_require_assessed": True,
    "source_time_properties": True,
    "stac_sortby": False,
    "stac_max_limit": 1000,
}


class _LazyCatalog:
    """Generates the catalog on first use (not at import or app creation: other simulators start faster)."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._catalog: Any = None

    def get(self) -> Any:
        if self._catalog is None:
            self._catalog = generate(self.state.rng("catalog"), self.state.config["min_plumes"])
        return self._catalog


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Starlette:
    cfg = {**DEFAULTS, **config}
    state = SimulatorState("carbonmapper", seed=seed, credentials=credentials, token_ttl=cfg["access_ttl"],
                           config=cfg)
    refresh_tokens = TokenStore(cfg["refresh_ttl"])
    limiter = RateLimiter(cfg["rate_limit_per_minute"])
    lazy = _LazyCatalog(state)

    async def ratelimit(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            limiter.per_minute = body.get("per_minute")
            limiter._hits.clear()
        return JSONResponse({"per_minute": limiter.per_minute})

    async def expire_refresh(request: Request) -> Response:
        return JSONResponse({"expired": refresh_tokens.expire_all()})

    control_rng = state.rng("control")  # one generator: every new plume gets its own uuid

    async def new_plume(request: Request) -> Response:
        """`POST /_sim/plumes {"lon": .., "lat": .., "gas"?, "sector"?, "instrument"?, "emission_auto"?}`: a plume
        published now (see `data.add_plume`); answers it as the REST catalog shows it."""
        body = await request.json()
        if not isinstance(body, dict) or not {"lon", "lat"} <= set(body):
            return JSONResponse({"detail": "lon and lat are required"}, status_code=422)
        plume = add_plume(request.app.state.catalog, control_rng, body)
        return JSONResponse(public(plume, request), status_code=201)

    admin = [
        Route("/_sim/ratelimit", ratelimit, methods=["GET", "POST"]),
        Route("/_sim/refresh/expire", expire_refresh, methods=["POST"]),
        Route("/_sim/plumes", new_plume, methods=["POST"]),
    ]
    contract = [*rest.routes(state, limiter, refresh_tokens), *stac.routes(state, limiter)]
    return _with_lazy_catalog(create_simulator_app(state, [*admin, *contract]), lazy)


def _with_lazy_catalog(app: Starlette, lazy: _LazyCatalog) -> Starlette:
    """Exposes `app.state.catalog`, generated on first access."""

    class _Middleware:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and not hasattr(app.state, "catalog"):
                app.state.catalog = lazy.get()
            await self.inner(scope, receive, send)

    app.add_middleware(_Middleware)
    return app
