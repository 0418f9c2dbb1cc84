"""SpaceKnow simulator: Auth0 password grant, Ragnar imagery search, scene metadata, credits, Kraken.

Contract: `../shared/upstreams/spaceknow.md`, its doc and `observed.md`. Every operation is a JSON POST; long ones
are pipelines (`…/initiate` → `POST /tasking/get-status` honouring `nextTry` → `…/retrieve`).

Where the doc is silent this simulator makes one choice, marked CHOICE below and configurable through
`create_app(**config)`, the `SIM_SPACEKNOW_CONFIG` environment variable (JSON) or `POST /_sim/config`:
- a pipeline answers PROCESSING for `polls` status calls, then RESOLVED (or FAILED when `fail_pipelines` > 0);
  `nextTry` is `next_try` seconds;
- errors are `{"error": CODE, "message": text}`: 400 invalid input, 401 missing/expired token, 404 unknown id,
  409 retrieve before RESOLVED;
- a search page holds `page_size` scenes; the retrieve answer carries `cursor` (an int: the offset of the next
  page) beside `results` (where the doc's other paged answers put it) while more scenes exist, and no `cursor` on
  the last page (the doc's retrieve sample). Fault: `lose_cursor_after` = N drops the cursor from every page after
  the N-th although more exist;
- map types (`POST /kraken/list-map-types`, the doc's listing shape) are single-input (one scene per dry-run group
  and per release, the doc: "single input map types require 1") except `change` (a pair): other group sizes, or
  map types of different input counts in one release, are refused (400 INVALID-SCENE-GROUP);
- the grid tile download is `GET /kraken/grid/{signed_map_id}/{request_geometry_id}/{zoom}/{x}/{y}/{file_name}`
  (public, the doc's parameter names) and answers 302 to the file in storage (`grid_redirect`, default true).

`GET /_sim/archive` lists the scene archive (the tests' truth), `POST /_sim/scenes` adds one, `/_sim/config` settings.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
from typing import Any

import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from simulators.framework import SimulatorState, chunked, create_simulator_app, require_bearer
from simulators.spaceknow.archive import (
    ALNUM,
    AUTH0_CLIENT_ID,
    DATASETS,
    MAP_TYPES,
    TIME_FORMAT,
    add_scene,
    datasets_catalog,
    generate_archive,
    grid_content,
    index,
    jwt,
    km2,
    map_types_catalog,
    mbr_side_m,
    public,
    tile,
    tile_bounds,
)

DEFAULT_CONFIG: dict[str, Any] = {
    "next_try": 1,  # CHOICE: seconds; the doc's sample is 14
    "polls": 2,  # status calls answering PROCESSING before RESOLVED
    "page_size": 100,  # scenes per search retrieve
    "token_ttl": 36000,  # the doc: "valid for 10 hours"
    "fail_pipelines": 0,  # the next N pipelines (whose initiate path contains `fail_path`) end FAILED
    "fail_path": "",
    "max_tiles": 12,  # tiles per released map
    "lose_cursor_after": None,  # fault: pages after the N-th carry no cursor although more exist
    "grid_redirect": True,  # grid downloads answer 302 to storage
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


class _BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _geometry(value: Any, field: str) -> BaseGeometry:
    try:
        geom = shapely.geometry.shape(value)
    except Exception:
        raise _BadRequest("INVALID-GEOJSON", f"'{field}' is not a GeoJSON geometry") from None
    if geom.is_empty or not geom.is_valid:
        raise _BadRequest("INVALID-GEOJSON", f"'{field}' is empty or invalid")
    return geom


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Starlette:
    settings = {**DEFAULT_CONFIG, **json.loads(os.environ.get("SIM_SPACEKNOW_CONFIG", "{}")), **config}
    state = SimulatorState("spaceknow", seed=seed, credentials=credentials, token_ttl=settings["token_ttl"],
                           config=settings)
    catalog = datasets_catalog()
    known = {(d["provider"], d["dataset"]): d for d in catalog}
    rates = {(row[0], row[1]): row[9] for row in DATASETS}
    cache: dict[str, Any] = {}
    pipelines: dict[str, dict[str, Any]] = {}
    maps: dict[str, dict[str, Any]] = {}
    bearer = require_bearer(state)

    def archive() -> list[dict[str, Any]]:
        return cache["scenes"] if "scenes" in cache else index(cache, generate_archive(state))

    def scene(scene_id: Any) -> dict[str, Any]:
        archive()
        found = cache["by_id"].get(scene_id) if isinstance(scene_id, str) else None
        if found is None:
            raise _BadRequest("SCENE-NOT-FOUND", f"scene {scene_id!r} does not exist", 404)
        return found

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _BadRequest("INVALID-JSON", "request body is not JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("INVALID-JSON", "request body must be a JSON object")
        return body

    def endpoint(handler: Any, public: bool = False) -> Any:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _BadRequest as exc:
                return _error(exc.status, exc.code, exc.message)

        run.__name__ = handler.__name__
        return run if public else bearer(run)

    def start_pipeline(kind: str, path: str, result: Any) -> JSONResponse:
        pid = "".join(secrets.choice(ALNUM) for _ in range(20))
        fail = settings["fail_pipelines"] > 0 and settings["fail_path"] in path
        if fail:
            settings["fail_pipelines"] -= 1
        pipelines[pid] = {"kind": kind, "polls": 0, "fail": fail, "result": result, "status": "NEW"}
        return JSONResponse({"nextTry": settings["next_try"], "pipelineId": pid, "status": "NEW"})

    def pipeline_of(body: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        pid = body.get("pipelineId")
        if not isinstance(pid, str) or len(pid) != 20:
            raise _BadRequest("INVALID-PIPELINE-ID", "'pipelineId' must be a 20-character string")
        found = pipelines.get(pid)
        if found is None or (kind is not None and found["kind"] != kind):
            raise _BadRequest("PIPELINE-NOT-FOUND", f"pipeline {pid} does not exist", 404)
        return found

    # ------------------------------------------------------------------ auth
    async def auth0(request: Request) -> Response:
        body = await body_of(request)
        expected = {"client_id": AUTH0_CLIENT_ID, "connection": "Username-Password-Authentication",
                    "grant_type": "password", "scope": "openid"}
        for key, value in expected.items():
            if body.get(key) != value:
                return JSONResponse({"error": "invalid_request", "error_description": f"bad {key}"}, 400)
        if body.get("username") != credentials.get("username") or body.get("password") != credentials.get(
            "password"
        ):
            return JSONResponse({"error": "invalid_user_password", "error_description": "Wrong email or password."},
                                401)
        ttl = float(settings["token_ttl"])
        id_token = jwt(f"auth0|{secrets.token_hex(12)}", ttl)
        access = state.tokens.issue(body["username"], ttl, prefix="sk")  # the doc leaves which one is sent
        state.tokens.register(id_token, body["username"], ttl)
        return JSONResponse({"id_token": id_token, "scope": "openid", "access_token": access.value,
                             "token_type": "bearer"})

    # ------------------------------------------------------------------ pipelines
    async def get_status(request: Request) -> Response:
        body = await body_of(request)
        found = pipeline_of(body)
        if found["status"] in ("NEW", "PROCESSING"):
            found["polls"] += 1
            if found["polls"] > settings["polls"]:
                found["status"] = "FAILED" if found["fail"] else "RESOLVED"
            else:
                found["status"] = "PROCESSING"
        out: dict[str, Any] = {"status": found["status"],
                               "nextTry": settings["next_try"] if found["status"] == "PROCESSING" else 0}
        if body.get("getProgress"):
            out["progress"] = {"message": f"{found['kind']}: step {found['polls']}", "provider": "sk",
                               "step": found["polls"]}
        return JSONResponse(out)

    def retrieve(kind: str) -> Any:
        async def handler(request: Request) -> Response:
            found = pipeline_of(await body_of(request), kind)
            if found["status"] == "FAILED":
                raise _BadRequest("PIPELINE-FAILED", f"the {kind} pipeline failed")
            if found["status"] != "RESOLVED":
                raise _BadRequest("PIPELINE-NOT-RESOLVED", f"the {kind} pipeline is {found['status']}", 409)
            return JSONResponse(found["result"])

        handler.__name__ = f"retrieve_{kind}"
        return handler

    # ------------------------------------------------------------------ Ragnar
    async def list_datasets(request: Request) -> Response:
        await body_of(request)
        return JSONResponse(catalog)

    async def search_initiate(request: Request) -> Response:
        body = await body_of(request)
        wanted = body.get("datasets")
        if not isinstance(wanted, list) or not wanted:
            raise _BadRequest("INVALID-DATASETS", "'datasets' must be a non-empty list")
        chosen = []
        for item in wanted:
            key = (item.get("provider"), item.get("dataset")) if isinstance(item, dict) else (None, None)
            if key not in known:
                raise _BadRequest("UNKNOWN-DATASET", f"unknown dataset {item!r}")
            chosen.append(known[key])
        if len(chosen) > 1 and any(d["requiresSeparateSearch"] for d in chosen):
            raise _BadRequest("SEPARATE-SEARCH-REQUIRED", "some datasets must be searched separately")
        extent = _geometry(body["extent"], "extent") if body.get("extent") is not None else shapely.geometry.box(
            -180, -90, 180, 90)
        side = min(d["maxMbrSide"] for d in chosen)
        if mbr_side_m(extent) > side:
            raise _BadRequest("EXTENT-TOO-LARGE", f"search area must be smaller than {side / 1000:.0f} x "
                              f"{side / 1000:.0f} km")
        bounds = []
        for field in ("startDatetime", "endDatetime"):
            value = body.get(field)
            try:
                bounds.append(dt.datetime.strptime(value, TIME_FORMAT).strftime(TIME_FORMAT) if value else None)
            except (TypeError, ValueError):
                raise _BadRequest("INVALID-DATETIME", f"'{field}' must be 'YYYY-MM-DD HH:MM:SS'") from None
        min_inter = float(body.get("minIntersection") or 0)
        cursor = body.get("cursor") or 0
        if not isinstance(cursor, int) or cursor < 0:
            raise _BadRequest("INVALID-CURSOR", "'cursor' must be a non-negative integer")
        keys = {(d["provider"], d["dataset"]) for d in chosen}
        archive()
        matches = []
        for sc in cache["scenes"]:
            if (sc["provider"], sc["dataset"]) not in keys:
                continue
            if (bounds[0] and sc["datetime"] < bounds[0]) or (bounds[1] and sc["datetime"] > bounds[1]):
                continue
            shape = cache["shapes"][sc["sceneId"]]
            if not shape.intersects(extent):
                continue
            if min_inter > 0 and shape.intersection(extent).area / shape.area < min_inter:
                continue
            matches.append(public(sc))
        size = int(settings["page_size"])
        result: dict[str, Any] = {"results": matches[cursor:cursor + size]}
        lose = settings["lose_cursor_after"]
        if cursor + size < len(matches) and (lose is None or cursor // size + 1 <= int(lose)):
            result["cursor"] = cursor + size
        return start_pipeline("search", request.url.path, result)

    async def get_metadata(request: Request) -> Response:
        body = await body_of(request)
        return JSONResponse(public(scene(body.get("sceneId"))))

    # ------------------------------------------------------------------ credits and Kraken
    def scene_list(value: Any, field: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not value:
            raise _BadRequest("INVALID-SCENE-IDS", f"'{field}' must be a non-empty list")
        return [scene(s) for s in value]

    def cost_lines(scenes: list[dict[str, Any]], area: BaseGeometry, factor: float) -> list[dict[str, Any]]:
        lines = []
        for sc in scenes:
            area_km2 = km2(cache["shapes"][sc["sceneId"]].intersection(area))
            rate = rates[(sc["provider"], sc["dataset"])] * factor
            lines.append({"cost": round(area_km2 * rate, 4), "costPerKm2": rate, "dataset": sc["dataset"],
                          "km2": round(area_km2, 4), "provider": sc["provider"], "sceneId": sc["sceneId"]})
        return lines

    async def check_area(request: Request) -> Response:
        body = await body_of(request)
        scenes = scene_list(body.get("sceneIds"), "sceneIds")
        area = _geometry(body.get("geojson"), "geojson")
        if area.bounds[1] < -85 or area.bounds[3] > 85:
            raise _BadRequest("INVALID-GEOJSON", "'geojson' must lie within -85 to 85 degrees of latitude")
        lines = cost_lines(scenes, area, 1.0)
        return JSONResponse({"cost": round(sum(x["cost"] for x in lines), 4),
                             "km2": round(sum(x["km2"] for x in lines), 4)})

    def map_types(value: Any) -> list[str]:
        if not isinstance(value, list) or not value or any(m not in MAP_TYPES for m in value):
            raise _BadRequest("INVALID-MAP-TYPES", f"'mapTypes' must be a non-empty list of {sorted(MAP_TYPES)}")
        return value

    def group_of(kinds: list[str], group: Any, field: str) -> list[dict[str, Any]]:
        """The scenes of one group, whose size every map type of `kinds` must take (1, or 2 for change)."""
        sizes = {MAP_TYPES[k][1] for k in kinds}
        if len(sizes) > 1:
            raise _BadRequest("INVALID-SCENE-GROUP", f"map types {kinds} take different numbers of input scenes: "
                              "send them separately")
        scenes = scene_list(group, field)
        if len(scenes) != next(iter(sizes)):
            raise _BadRequest("INVALID-SCENE-GROUP", f"map types {kinds} take {next(iter(sizes))} input scene(s) "
                              f"per map, got {len(scenes)} in '{field}'")
        return scenes

    async def list_map_types(request: Request) -> Response:
        await body_of(request)
        return JSONResponse(map_types_catalog())

    async def dry_run_initiate(request: Request) -> Response:
        body = await body_of(request)
        extent = _geometry(body.get("extent"), "extent")
        runs = body.get("dryRuns")
        if not isinstance(runs, list) or not runs:
            raise _BadRequest("INVALID-DRY-RUNS", "'dryRuns' must be a non-empty list")
        lines: list[dict[str, Any]] = []
        for run in runs:
            kinds = map_types(run.get("mapTypes"))
            factor = sum(MAP_TYPES[m][0] for m in kinds)
            if not isinstance(run.get("scenes"), list) or not run["scenes"]:
                raise _BadRequest("INVALID-DRY-RUNS", "every dry run needs a non-empty 'scenes' list of groups")
            for group in run["scenes"]:
                lines.extend(cost_lines(group_of(kinds, group, "scenes"), extent, factor))
        km2 = round(sum(x["km2"] for x in lines), 4)
        result = {"allocatedCredits": round(sum(x["cost"] for x in lines), 4), "allocatedKm2": km2,
                  "analyzedKm2": km2, "ingestedKm2": km2, "krakenKm2": km2, "scenes": lines}
        return start_pipeline("dry-run", request.url.path, result)

    async def release_initiate(request: Request) -> Response:
        body = await body_of(request)
        kinds = map_types(body.get("mapTypes"))
        scenes = group_of(kinds, body.get("sceneIds"), "sceneIds")
        extent = _geometry(body.get("extent"), "extent")
        covered = shapely.union_all([cache["shapes"][s["sceneId"]] for s in scenes]).intersection(extent)
        if covered.is_empty:
            raise _BadRequest("EXTENT-OUTSIDE-SCENES", "'extent' does not intersect the scenes' footprints")
        gsd = min(b["gsd"] for s in scenes for b in s["bands"])
        lat = (covered.bounds[1] + covered.bounds[3]) / 2
        max_zoom = max(8, min(19, round(math.log2(156543.03 * math.cos(math.radians(lat)) / gsd))))
        w, s, e, n = covered.bounds
        for zoom in range(max_zoom, -1, -1):
            (x0, y0), (x1, y1) = tile(w, n, zoom), tile(e, s, zoom)
            if (x1 - x0 + 1) * (y1 - y0 + 1) <= settings["max_tiles"]:
                break
        tiles = [[zoom, x, y] for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)
                 if shapely.geometry.box(*tile_bounds(zoom, x, y)).intersects(covered)]
        map_id = secrets.token_urlsafe(12)
        files = sorted({f for k in kinds for names in MAP_TYPES[k][3].values() for f in names})
        maps[map_id] = {"tiles": {tuple(t) for t in tiles}, "files": files, "mapTypes": kinds}
        result = {"mapId": map_id, "maxZoom": max_zoom, "status": "succeeded", "subGeometryId": "-",
                  "tiles": tiles}
        return start_pipeline("release", request.url.path, result)

    async def grid_file(request: Request) -> Response:
        p = request.path_params
        map_id = p["signed_map_id"]
        found = maps.get(map_id)
        z, x, y, name = p["zoom"], p["x"], p["y"], p["file_name"]
        if found is None or (z, x, y) not in found["tiles"] or name not in found["files"]:
            return _error(404, "GRID-FILE-NOT-FOUND", "no such map, tile or grid file")
        if settings["grid_redirect"] and "/kraken/grid/" in request.url.path:
            return RedirectResponse(str(request.url).replace("/kraken/grid/", "/storage/grid/", 1), 302)
        data, media = grid_content(state.rng(f"{map_id}:{z}:{x}:{y}:{name}"), map_id, (z, x, y), name,
                                   found["mapTypes"])
        chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)]
        return StreamingResponse(chunked(state, chunks, request.url.path), media_type=media)

    # ------------------------------------------------------------------ simulator admin
    async def sim_config(request: Request) -> Response:
        if request.method == "POST":
            settings.update(await request.json())
        return JSONResponse(settings)

    async def sim_scenes(request: Request) -> Response:  # POST /_sim/scenes: a new scene (archive.new_scene)
        archive()
        return JSONResponse(*add_scene(cache, await request.body()))

    async def sim_archive(request: Request) -> Response:
        return JSONResponse([{**public(sc), "region": sc["_region"]} for sc in archive()])

    post = ["POST"]
    routes = [
        Route("/_sim/config", sim_config, methods=["GET", "POST"]),
        Route("/_sim/archive", sim_archive),
        Route("/_sim/scenes", sim_scenes, methods=post),
        Route("/auth0/oauth/ro", endpoint(auth0, public=True), methods=post),
        Route("/tasking/get-status", endpoint(get_status), methods=post),
        Route("/imagery/list-datasets", endpoint(list_datasets), methods=post),
        Route("/imagery/search/initiate", endpoint(search_initiate), methods=post),
        Route("/imagery/search/retrieve", endpoint(retrieve("search")), methods=post),
        Route("/imagery/get-metadata", endpoint(get_metadata), methods=post),
        Route("/credits/check-area", endpoint(check_area), methods=post),
        Route("/kraken/dry-run/initiate", endpoint(dry_run_initiate), methods=post),
        Route("/kraken/dry-run/retrieve", endpoint(retrieve("dry-run")), methods=post),
        Route("/kraken/release/initiate", endpoint(release_initiate), methods=post),
        Route("/kraken/release/retrieve", endpoint(retrieve("release")), methods=post),
        Route("/kraken/list-map-types", endpoint(list_map_types), methods=post),
        *(Route(f"/{prefix}/grid/{{signed_map_id}}/{{request_geometry_id}}/{{zoom:int}}/{{x:int}}/{{y:int}}/"
                "{file_name}", endpoint(grid_file, public=True)) for prefix in ("kraken", "storage")),
    ]
    return create_simulator_app(state, routes)
