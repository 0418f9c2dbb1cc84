"""SpaceKnow processes: `spaceknow-check-area` (sync) and `spaceknow-analysis` (async job, spends credits).

The analysis is a set of Kraken releases: one per scene for single-input map types, one per pair of consecutive
scenes for pairwise ones (`kraken.plan`). Before anything is released, one dry run over exactly those groups
estimates the cost and the job is refused (400, with the estimate) when that exceeds the caller's `max_credits`. Job
status follows the release pipelines; the results list every map (id, max zoom, tiles) with links to its grid files
(from SpaceKnow's map-type listing), served through geofed.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import httpx

from geofed import errors
from geofed.jobs.protocol import JobContext, JobProgress
from geofed.ogc.process import AsyncOnlyProcessor, UpstreamProcessor, process_input
from geofed.query import geometry_bounds, parse_geometry
from providers.spaceknow import kraken, pipelines
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient
from providers.spaceknow.sources import SCENE_ID

GEOMETRY_SCHEMA = {"type": "object", "contentMediaType": "application/geo+json",
                   "description": "a GeoJSON geometry in WGS84 (lon/lat)"}
SCENE_IDS_INPUT = process_input(
    "Scene ids", "ids of SpaceKnow scenes: the `id` of features of /collections/spaceknow-scenes/items (or items of "
    "/stac/collections/spaceknow-scenes/items)",
    {"type": "array", "items": {"type": "string"}, "minItems": 1}, required=True)
JOB_STATUS = {"NEW": "accepted", "PROCESSING": "running"}
# Demo scenes (the simulators' archive, seed 42): two overlapping Pléiades scenes in the Permian Basin, older first.
DEMO_SCENES = ["3NGuh_rkZezBdOxOUmKmAlKxmf2Add_gSqH2h1M5AYbAVHdsqQPtj-irK",
               "NTf1rSTWGqTkauz83GrFhr9Kj5kXs7U6Ov893KdYG6kfON"]


def _square(lon: float, lat: float, half: float = 0.02) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[lon - half, lat - half], [lon + half, lat - half],
                                                [lon + half, lat + half], [lon - half, lat + half],
                                                [lon - half, lat - half]]]}


def _scene_ids(data: dict[str, Any], name: str = "sceneIds") -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and SCENE_ID.match(v) for v in value):
        raise errors.InvalidParameter(f"'{name}' must be a non-empty list of scene ids", parameter=name)
    return value


def _geometry(data: dict[str, Any], name: str, max_lat: float = 90.0) -> dict[str, Any]:
    """A required GeoJSON geometry input (WGS84; latitudes within ±`max_lat`), else a 400 naming it."""
    geometry = parse_geometry(data.get(name), name)
    if geometry is None:
        raise errors.InvalidParameter(f"'{name}' is required: a GeoJSON geometry", parameter=name)
    _, south, _, north = geometry_bounds(geometry)
    if south < -max_lat or north > max_lat:
        raise errors.InvalidParameter(f"'{name}' must have latitudes within ±{max_lat:g}", parameter=name)
    return geometry


class CheckAreaProcessor(UpstreamProcessor):
    PROCESS_METADATA: dict[str, Any] = {
        "version": "1.0.0",
        "id": "spaceknow-check-area",
        "title": "SpaceKnow: cost of an area",
        "description": "Credits SpaceKnow would charge for analysing `geometry` in the given scenes, and its km².",
        "jobControlOptions": ["sync-execute"],
        "keywords": ["SpaceKnow", "credits"],
        "inputs": {
            "sceneIds": SCENE_IDS_INPUT,
            "geometry": process_input("Area", "the area to price: a GeoJSON geometry, WGS84, latitudes within ±85",
                                      GEOMETRY_SCHEMA, required=True),
        },
        "outputs": {
            "cost": {"title": "Credits", "description": "credits SpaceKnow would charge for the area in these scenes",
                     "schema": {"type": "number"}},
            "km2": {"title": "Area, km²", "description": "the area those credits pay for, km²",
                    "schema": {"type": "number"}},
        },
        "example": {"inputs": {"sceneIds": DEMO_SCENES[1:], "geometry": _square(-101.7366, 31.4507)}},
    }

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.PROCESS_METADATA)

    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:
        scene_ids = _scene_ids(data)
        geometry = _geometry(data, "geometry", max_lat=85.0)  # the doc: within -85..85 degrees of latitude
        try:
            answer = await SpaceKnowClient().check_area(scene_ids, geometry)
        except errors.UpstreamNotFound as exc:
            raise _unknown_scenes(exc) from None
        if not isinstance(answer, dict) or "cost" not in answer or "km2" not in answer:
            raise errors.UpstreamError(f"{TITLE} check-area answered without cost and km2", upstream=NAME)
        return "application/json", {"cost": answer["cost"], "km2": answer["km2"]}


def _unknown_scenes(exc: errors.UpstreamNotFound) -> errors.InvalidParameter:
    return errors.InvalidParameter(
        f"'sceneIds': {TITLE} does not know a scene of the list ({exc.message}); scene ids are the `id` of the "
        "features of /collections/spaceknow-scenes/items", parameter="sceneIds")


class AnalysisProcessor(AsyncOnlyProcessor):
    """Async only: the job manager calls `submit/poll/results/open_file/cancel` (geofed.jobs.protocol)."""

    requires_api_key = True  # spends the customer's SpaceKnow credits
    PROCESS_METADATA: ClassVar[dict[str, Any]] = {
        "version": "2.0.0",
        "id": "spaceknow-analysis",
        "title": "SpaceKnow: Kraken analysis",
        "description": (
            "Runs SpaceKnow Kraken map types over scenes inside an extent. Single-input map types (imagery, aircraft, "
            "ships, cars, wrunc, ...) make one map per scene; change makes one map per pair of consecutive scenes "
            "(older first). Spends SpaceKnow credits: requires a geofed API key (header X-API-Key), and is refused "
            "(with the dry-run estimate) when the estimate exceeds max_credits. Asynchronous only: send "
            "'Prefer: respond-async'."
        ),
        "jobControlOptions": ["async-execute"],
        "keywords": ["SpaceKnow", "Kraken", "analysis"],
        "inputs": {
            "mapTypes": process_input(
                "Map types", "Kraken map types to run, e.g. imagery, aircraft, ships, cars, wrunc, change; the valid "
                "ones are those SpaceKnow's list-map-types gives this account (a wrong one is refused naming them)",
                {"type": "array", "items": {"type": "string"}, "minItems": 1}, required=True),
            "sceneIds": {**SCENE_IDS_INPUT, "description": SCENE_IDS_INPUT["description"] + "; for change, at least "
                         "two, older first"},
            "extent": process_input("Extent", "the area to analyse: a GeoJSON geometry (WGS84) that intersects the "
                                    "scenes' footprints", GEOMETRY_SCHEMA, required=True),
            "max_credits": process_input("Budget", "the most credits this analysis may cost: refused (nothing "
                                         "released) when SpaceKnow's dry-run estimate exceeds it",
                                         {"type": "number", "minimum": 0}, required=True),
        },
        "outputs": {
            "maps": {"title": "Kraken maps", "description": "one entry per released map: mapId, mapTypes, sceneIds, "
                     "maxZoom, tiles ([zoom, x, y]) and gridFiles (links to every grid file of every tile, served "
                     "through geofed)", "schema": {"type": "array", "items": {"type": "object"}}},
            "estimate": {"title": "Dry-run estimate", "description": "SpaceKnow's dry-run estimate the budget was "
                         "checked against: credits and km²", "schema": {"type": "object"}},
        },
        "example": {"inputs": {"mapTypes": ["aircraft", "change"], "sceneIds": DEMO_SCENES,
                               "extent": _square(-101.728, 31.4667), "max_credits": 100}},
    }

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.PROCESS_METADATA)

    # ------------------------------------------------------------------ UpstreamJobProcess
    async def submit(self, inputs: dict[str, Any], job: JobContext) -> dict[str, Any]:
        client = SpaceKnowClient()
        known = await kraken.map_types(client)
        map_types = kraken.check_map_types(inputs.get("mapTypes"), known)
        scene_ids = _scene_ids(inputs)
        extent = _geometry(inputs, "extent")
        budget = inputs.get("max_credits")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 0:
            raise errors.InvalidParameter("'max_credits' must be a non-negative number", parameter="max_credits")
        releases = kraken.plan(map_types, scene_ids, set(client.options.pairwise_map_types))
        try:
            dry_run = await pipelines.run(client, "dry_run", {
                "dryRuns": kraken.dry_runs(releases), "extent": extent, "allocate": False, "ignoreCache": False,
                "onlyIngested": False})
        except errors.UpstreamNotFound as exc:
            raise _unknown_scenes(exc) from None
        if not isinstance(dry_run, dict) or not isinstance(dry_run.get("allocatedCredits"), int | float):
            raise errors.UpstreamError(f"{TITLE} dry run answered without allocatedCredits", upstream=NAME)
        estimate = {"credits": dry_run["allocatedCredits"], "km2": dry_run.get("analyzedKm2")}
        if estimate["credits"] > budget:
            raise errors.InvalidParameter(
                f"the estimated cost is {estimate['credits']:g} credits ({estimate['km2']} km²) for "
                f"{len(releases)} map(s), over max_credits {budget:g}; nothing was released",
                parameter="max_credits",
            )
        maps: list[dict[str, Any]] = []
        for release in releases:
            try:  # a release spends credits: each is sent once, never retried
                state = await pipelines.start(client, "release", {
                    "mapTypes": list(release.map_types), "sceneIds": list(release.scene_ids), "extent": extent,
                    "subGeometry": None, "onlyIngested": False}, idempotent=False)
            except errors.GeofedError as exc:
                if not maps:
                    raise
                raise errors.UpstreamError(
                    f"{exc.message}; {len(maps)} of {len(releases)} maps were already released (pipelines "
                    f"{', '.join(m['pipelineId'] for m in maps)})", upstream=NAME) from None
            maps.append({"pipelineId": state.pipeline_id, "mapTypes": list(release.map_types),
                         "sceneIds": list(release.scene_ids)})
        files = {m: kraken.grid_files(known[m]) for m in map_types}
        return {"maps": maps, "gridFiles": files, "estimate": estimate}

    async def poll(self, handle: dict[str, Any]) -> JobProgress:
        client = SpaceKnowClient()
        maps = [dict(m) for m in _maps(handle)]
        waiting: list[pipelines.PipelineState] = []
        for entry in maps:
            if "mapId" in entry:
                continue
            state = await pipelines.status(client, entry["pipelineId"])
            if pipelines.is_failed(client, state):
                return JobProgress("failed", message=pipelines.failure("release", state.pipeline_id).message)
            if pipelines.is_resolved(client, state):
                entry.update(await _map(client, entry["pipelineId"]))
            else:
                waiting.append(state)
        done = len(maps) - len(waiting)
        handle = {**handle, "maps": maps}
        if not waiting:
            return JobProgress("successful", 100, f"{len(maps)} Kraken map(s) released", handle=handle)
        message = next((str(s.progress["message"]) for s in waiting if isinstance(s.progress, dict)
                        and s.progress.get("message")), waiting[0].status)
        status = "accepted" if not done and all(JOB_STATUS.get(s.status) == "accepted" for s in waiting) else "running"
        return JobProgress(status, int(100 * done / len(maps)),  # type: ignore[arg-type]
                           f"{done} of {len(maps)} maps released; {message}", handle=handle,
                           next_poll=min(s.next_try for s in waiting))

    async def _resolved(self, handle: dict[str, Any]) -> list[dict[str, Any]]:
        client = SpaceKnowClient()
        return [m if "mapId" in m else {**m, **await _map(client, m["pipelineId"])} for m in _maps(handle)]

    async def _files(self, handle: dict[str, Any], entry: dict[str, Any]) -> list[str]:
        files = handle.get("gridFiles")
        if not isinstance(files, dict):  # a job submitted before grid files were kept: the listing now
            known = await kraken.map_types(SpaceKnowClient())
            files = {m: kraken.grid_files(known[m]) for m in entry["mapTypes"] if m in known}
        return sorted({f for m in entry["mapTypes"] for f in files.get(m, [])})

    async def results(self, handle: dict[str, Any], job: JobContext) -> dict[str, Any]:
        out = []
        for i, entry in enumerate(await self._resolved(handle)):
            links = [{"href": f"{job.results_url}/files/{i}-{z}-{x}-{y}-{name}", "rel": "item",
                      "title": f"{name}, map {i}, tile {z}/{x}/{y}", "type": _media_type(name)}
                     for z, x, y in entry["tiles"] for name in await self._files(handle, entry)]
            out.append({"mapId": entry["mapId"], "mapTypes": entry["mapTypes"], "sceneIds": entry["sceneIds"],
                        "maxZoom": entry["maxZoom"], "tiles": entry["tiles"], "gridFiles": links})
        return {"maps": out, "estimate": handle.get("estimate")}

    async def open_file(self, handle: dict[str, Any], file_id: str) -> tuple[str, AsyncIterator[bytes]]:
        parts = file_id.split("-", 4)
        maps = await self._resolved(handle)
        try:
            index, zoom, x, y, name = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), parts[4]
            entry = maps[index]
        except (IndexError, ValueError):
            raise errors.NotFound(f"no result file {file_id!r}") from None
        if [zoom, x, y] not in [list(t) for t in entry["tiles"]] or name not in await self._files(handle, entry):
            raise errors.NotFound(f"no result file {file_id!r}")
        client = SpaceKnowClient()
        stack = AsyncExitStack()
        response = await stack.enter_async_context(
            client.grid_file(entry["mapId"], zoom, x, y, name, entry.get("geometryId", "-")))

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            except httpx.HTTPError as exc:
                raise client.http.stream_broken(exc) from None
            finally:
                await stack.aclose()

        return response.headers.get("content-type", _media_type(name)), body()

    async def cancel(self, handle: dict[str, Any]) -> None:
        """SpaceKnow documents no way to stop a pipeline (credits are allocated at release): nothing to do upstream."""


def _maps(handle: dict[str, Any]) -> list[dict[str, Any]]:
    """The handle's maps (a job submitted before one map per scene: its one release)."""
    if "maps" in handle:
        return list(handle["maps"])
    legacy = {"pipelineId": handle["pipelineId"], "mapTypes": handle.get("mapTypes", []), "sceneIds": []}
    return [{**legacy, **{k: handle[k] for k in ("mapId", "maxZoom", "tiles", "geometryId") if k in handle}}]


async def _map(client: SpaceKnowClient, pipeline_id: str) -> dict[str, Any]:
    answer = await client.retrieve("release", pipeline_id)
    if not isinstance(answer, dict) or not answer.get("mapId"):
        raise errors.UpstreamError(f"{TITLE} release retrieve answered without a mapId", upstream=NAME)
    return {"mapId": answer["mapId"], "maxZoom": answer.get("maxZoom"), "tiles": answer.get("tiles") or [],
            "geometryId": answer.get("subGeometryId") or "-"}


def _media_type(name: str) -> str:
    if name.endswith(".geojson"):
        return "application/geo+json"
    if name.endswith(".geotiff"):
        return "image/tiff; application=geotiff"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
