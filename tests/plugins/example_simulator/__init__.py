"""The simulator of the example upstream: a tiny REST API of methane monitoring stations.

Contract (as an upstream's doc would state it): `GET /stations` with `limit` (1..50, else 400), `offset`,
`network` (repeatable), `bbox=w,s,e,n`; answers `{"total": n, "items": [...]}` ordered by `station_id`.
Items per page may be fewer than `limit` while more exist (`total` says how many match).
`GET /stations/{id}` → one station or 404. Every call needs `X-Api-Key: <key>` (else 401).
"""

from __future__ import annotations

import random

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simulators import SimulatorSpec

NETWORKS = ("AGAGE", "NOAA-GML", "ICOS")


def _stations(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for i in range(37):
        out.append({
            "station_id": f"ST{i:03d}", "name": f"Station {i}", "network": NETWORKS[i % 3],
            "lon": round(rng.uniform(-120, 40), 4), "lat": round(rng.uniform(-40, 60), 4),
            "measured_at": f"2024-0{1 + i % 9}-{1 + i % 27:02d}T12:00:00Z",
            "ch4_ppb": round(rng.uniform(1850, 2100), 1),
        })
    return out


def create_app(credentials: dict[str, str], seed: int = 42, uneven: bool = False, **_: object) -> Starlette:
    """`uneven`: pages are cut short at varying lengths (as some real APIs do), `total` still exact."""
    stations = _stations(seed)
    cuts = random.Random(seed + 1)
    key = credentials["api_key"]

    def authorized(request: Request) -> bool:
        return request.headers.get("x-api-key") == key

    async def search(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong X-Api-Key"}, status_code=401)
        try:
            limit = int(request.query_params.get("limit", "10"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return JSONResponse({"error": "limit and offset are integers"}, status_code=400)
        if not 1 <= limit <= 50 or offset < 0:
            return JSONResponse({"error": "limit must be 1..50"}, status_code=400)
        found = stations
        networks = request.query_params.getlist("network")
        if networks:
            found = [s for s in found if s["network"] in networks]
        if bbox := request.query_params.get("bbox"):
            w, s, e, n = (float(v) for v in bbox.split(","))
            found = [x for x in found if w <= x["lon"] <= e and s <= x["lat"] <= n]  # type: ignore[operator]
        if uneven:
            limit = cuts.randint(1, limit)
        return JSONResponse({"total": len(found), "items": found[offset:offset + limit]})

    async def one(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong X-Api-Key"}, status_code=401)
        for station in stations:
            if station["station_id"] == request.path_params["sid"]:
                return JSONResponse(station)
        return JSONResponse({"error": "no such station"}, status_code=404)

    return Starlette(routes=[Route("/stations", search), Route("/stations/{sid}", one)])


SIMULATOR = SimulatorSpec("stations", create_app, {"api_key": "demo-stations-key"})
