"""SpaceKnow processes: `spaceknow-check-area` (sync) and `spaceknow-analysis` (async job, spends credits).

The analysis is a Kraken release. Before anything is released, a dry run estimates its cost and the job is refused
(400, with the estimate) when that exceeds the caller's `max_credits`. Job status follows the release pipeline; the
results give the map id, max zoom, tiles and links to the grid files, served through geofed.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import shapely.geometry
from pygeoapi.process.base import ProcessorExecuteError

from geofed import errors
from geofed.jobs.protocol import JobContext, JobProgress
from geofed.ogc.process import UpstreamProcessor
from providers.spaceknow import pipelines
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient
from providers.spaceknow.source import SCENE_ID

GEOMETRY_SCHEMA = {"type": "object", "contentMediaType": "application/geo+json",
                   "description": "a GeoJSON geometry in WGS84 (lon/lat)"}
SCENE_IDS_INPUT = {
    "title": "Scene ids",
    "description": "ids of spaceknow-scenes features",
    "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "minOccurs": 1,
    "maxOccurs": 1,
}
# Grid files each Kraken map type produces (SpaceKnow's list-map-types `gridFiles`); configurable per deployment
# through the process's `grid_files:` option in config/resources/spaceknow.yml.
DEFAULT_GRID_FILES: dict[str, list[str]] = {
    "imagery": ["truecolor.png", "imagery.ski"],
    "aircraft": ["detections.geojson", "segmentation.png", "metadata.json"],
    "ships": ["detections.geojson", "segmentation.png", "metadata.json"],
    "change": ["change.png", "metadata.json"],
    "wrunc": ["wrunc.png", "metadata.json"],
}
JOB_STATUS = {"NEW": "accepted", "PROCESSING": "running"}


def _scene_ids(data: dict[str, Any], name: str = "sceneIds") -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and SCENE_ID.match(v) for v in value):
        raise errors.InvalidParameter(f"'{name}' must be a non-empty list of scene ids", parameter=name)
    return value


def _geometry(data: dict[str, Any], name: str, max_lat: float = 90.0) -> dict[str, Any]:
    value = data.get(name)
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    try:
        shape = shapely.geometry.shape(value)
    except Exception:
        raise errors.InvalidParameter(f"'{name}' must be a GeoJSON geometry", parameter=name) from None
    if shape.is_empty or not shape.is_valid:
        raise errors.InvalidParameter(f"'{name}' is an empty or invalid geometry", parameter=name)
    w, s, e, n = shape.bounds
    if w < -180 or e > 180 or s < -max_lat or n > max_lat:
        raise errors.InvalidParameter(
            f"'{name}' must be WGS84 lon/lat with latitudes within ±{max_lat:g}", parameter=name
        )
    return shapely.geometry.mapping(shape)  # type: ignore[return-value]


class CheckAreaProcessor(UpstreamProcessor):
    METADATA: dict[str, Any] = {
        "version": "1.0.0",
        "id": "spaceknow-check-area",
        "title": "SpaceKnow: cost of an area",
        "description": "Credits SpaceKnow would charge for analysing `geometry` in the given scenes, and its km².",
        "jobControlOptions": ["sync-execute"],
        "keywords": ["SpaceKnow", "credits"],
        "inputs": {
            "sceneIds": SCENE_IDS_INPUT,
            "geometry": {"title": "Area", "schema": GEOMETRY_SCHEMA, "minOccurs": 1, "maxOccurs": 1,
                         "description": "GeoJSON geometry, WGS84, latitudes within ±85"},
        },
        "outputs": {
            "cost": {"title": "Credits", "schema": {"type": "number"}},
            "km2": {"title": "Area, km²", "schema": {"type": "number"}},
        },
        "example": {"inputs": {"sceneIds": ["<sceneId>"], "geometry": {
            "type": "Polygon", "coordinates": [[[-103.5, 31.5], [-103.4, 31.5], [-103.4, 31.6], [-103.5, 31.5]]]}}},
    }

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.METADATA)

    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:
        scene_ids = _scene_ids(data)
        geometry = _geometry(data, "geometry", max_lat=85.0)  # the doc: within -85..85 degrees of latitude
        answer = await SpaceKnowClient().check_area(scene_ids, geometry)
        if not isinstance(answer, dict) or "cost" not in answer or "km2" not in answer:
            raise errors.UpstreamError(f"{TITLE} check-area answered without cost and km2", upstream=NAME)
        return "application/json", {"cost": answer["cost"], "km2": answer["km2"]}


class AnalysisProcessor(UpstreamProcessor):
    """Async only: the job manager calls `submit/poll/results/open_file/cancel` (geofed.jobs.protocol)."""

    requires_api_key = True  # spends the customer's SpaceKnow credits
    METADATA: dict[str, Any] = {
        "version": "1.0.0",
        "id": "spaceknow-analysis",
        "title": "SpaceKnow: Kraken analysis",
        "description": (
            "Runs SpaceKnow Kraken map types over scenes inside an extent. Spends SpaceKnow credits: requires a geofed "
            "API key, and is refused (with the dry-run estimate) when the estimate exceeds max_credits."
        ),
        "jobControlOptions": ["async-execute"],
        "keywords": ["SpaceKnow", "Kraken", "analysis"],
        "inputs": {
            "mapTypes": {"title": "Map types", "minOccurs": 1, "maxOccurs": 1,
                         "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                         "description": "Kraken map types, e.g. imagery, aircraft, ships"},
            "sceneIds": SCENE_IDS_INPUT,
            "extent": {"title": "Extent", "schema": GEOMETRY_SCHEMA, "minOccurs": 1, "maxOccurs": 1},
            "max_credits": {"title": "Budget", "schema": {"type": "number", "minimum": 0}, "minOccurs": 1,
                            "maxOccurs": 1, "description": "refuse the analysis when the estimate exceeds this"},
        },
        "outputs": {
            "mapId": {"title": "Kraken map id", "schema": {"type": "string"}},
            "maxZoom": {"title": "Maximum zoom", "schema": {"type": "integer"}},
            "tiles": {"title": "Tiles [zoom, x, y]", "schema": {"type": "array"}},
            "gridFiles": {"title": "Grid files (links)", "schema": {"type": "array"}},
            "estimate": {"title": "Dry-run estimate", "schema": {"type": "object"}},
        },
    }

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.METADATA)
        self.grid_files: dict[str, list[str]] = {**DEFAULT_GRID_FILES, **(processor_def.get("grid_files") or {})}

    def execute(self, data: dict[str, Any], outputs: dict[str, Any] | None = None) -> tuple[str, Any]:
        # Spending credits is only allowed through geofed's job manager, which checks the API key.
        err = ProcessorExecuteError(user_msg="spaceknow-analysis runs only as a job: send 'Prefer: respond-async'")
        err.http_status_code = 400  # type: ignore[assignment]
        err.ogc_exception_code = "InvalidParameterValue"
        raise err

    # ------------------------------------------------------------------ UpstreamJobProcess
    async def submit(self, inputs: dict[str, Any], job: JobContext) -> dict[str, Any]:
        client = SpaceKnowClient()
        map_types = inputs.get("mapTypes")
        if not isinstance(map_types, list) or not map_types or not all(isinstance(m, str) for m in map_types):
            raise errors.InvalidParameter("'mapTypes' must be a non-empty list of map type names", parameter="mapTypes")
        scene_ids = _scene_ids(inputs)
        extent = _geometry(inputs, "extent")
        budget = inputs.get("max_credits")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 0:
            raise errors.InvalidParameter("'max_credits' must be a non-negative number", parameter="max_credits")
        dry_run = await pipelines.run(client, "dry_run", {
            "dryRuns": [{"mapTypes": map_types, "scenes": [scene_ids]}],
            "extent": extent, "allocate": False, "ignoreCache": False, "onlyIngested": False,
        })
        if not isinstance(dry_run, dict) or not isinstance(dry_run.get("allocatedCredits"), int | float):
            raise errors.UpstreamError(f"{TITLE} dry run answered without allocatedCredits", upstream=NAME)
        estimate = {"credits": dry_run["allocatedCredits"], "km2": dry_run.get("analyzedKm2")}
        if estimate["credits"] > budget:
            raise errors.InvalidParameter(
                f"the estimated cost is {estimate['credits']:g} credits ({estimate['km2']} km²), over max_credits "
                f"{budget:g}; nothing was released",
                parameter="max_credits",
            )
        release = await pipelines.start(client, "release", {
            "mapTypes": map_types, "sceneIds": scene_ids, "extent": extent, "subGeometry": None,
            "onlyIngested": False,
        }, idempotent=False)  # a release spends credits: never sent twice
        return {"pipelineId": release.pipeline_id, "mapTypes": map_types, "estimate": estimate}

    async def poll(self, handle: dict[str, Any]) -> JobProgress:
        client = SpaceKnowClient()
        state = await pipelines.status(client, handle["pipelineId"])
        if pipelines.is_failed(client, state):
            return JobProgress("failed", message=pipelines.failure("release", state.pipeline_id).message)
        if pipelines.is_resolved(client, state):
            if "mapId" not in handle:
                handle = {**handle, **await self._map(client, handle)}
            return JobProgress("successful", 100, "Kraken map released", handle=handle)
        message = (state.progress or {}).get("message") if isinstance(state.progress, dict) else None
        return JobProgress(JOB_STATUS.get(state.status, "running"), message=message or state.status,  # type: ignore[arg-type]
                           next_poll=state.next_try)

    async def _map(self, client: SpaceKnowClient, handle: dict[str, Any]) -> dict[str, Any]:
        answer = await client.retrieve("release", handle["pipelineId"])
        if not isinstance(answer, dict) or not answer.get("mapId"):
            raise errors.UpstreamError(f"{TITLE} release retrieve answered without a mapId", upstream=NAME)
        return {"mapId": answer["mapId"], "maxZoom": answer.get("maxZoom"), "tiles": answer.get("tiles") or [],
                "geometryId": answer.get("subGeometryId") or "-"}

    def _files(self, handle: dict[str, Any]) -> list[str]:
        return sorted({f for m in handle.get("mapTypes", []) for f in self.grid_files.get(m, [])})

    async def results(self, handle: dict[str, Any], job: JobContext) -> dict[str, Any]:
        found = handle if "mapId" in handle else {**handle, **await self._map(SpaceKnowClient(), handle)}
        links = [
            {"href": f"{job.results_url}/files/{z}-{x}-{y}-{name}", "rel": "item", "title": f"{name}, tile {z}/{x}/{y}",
             "type": _media_type(name)}
            for z, x, y in found["tiles"]
            for name in self._files(found)
        ]
        return {"mapId": found["mapId"], "maxZoom": found["maxZoom"], "tiles": found["tiles"], "gridFiles": links,
                "estimate": found.get("estimate")}

    async def open_file(self, handle: dict[str, Any], file_id: str) -> tuple[str, AsyncIterator[bytes]]:
        found = handle if "mapId" in handle else {**handle, **await self._map(SpaceKnowClient(), handle)}
        parts = file_id.split("-", 3)
        try:
            zoom, x, y, name = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
        except (IndexError, ValueError):
            raise errors.NotFound(f"no result file {file_id!r}") from None
        if [zoom, x, y] not in [list(t) for t in found["tiles"]] or name not in self._files(found):
            raise errors.NotFound(f"no result file {file_id!r}")
        client = SpaceKnowClient()
        stack = AsyncExitStack()
        response = await stack.enter_async_context(
            client.grid_file(found["mapId"], zoom, x, y, name, found.get("geometryId", "-"))
        )

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


def _media_type(name: str) -> str:
    if name.endswith(".geojson"):
        return "application/geo+json"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
