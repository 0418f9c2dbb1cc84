"""`emissions-inventory`: what is emitting in an area, how much, and what imagery could confirm it, in one call.

Synchronous for small areas (the answer carries the result); above `GEOFED_INVENTORY_SYNC_MAX_KM2` or
`GEOFED_INVENTORY_SYNC_MAX_FEATURES` (see `inputs`) only as a job (`Prefer: respond-async`). A job is an
`UpstreamJobProcess` whose "upstream" is this server: `submit` checks the inputs and starts the fan-out on the
upstream loop; `poll` reports its progress (sections read); the finished summary and features become the job's
handle, so they live in the job store and every replica serves the results and files; a job whose server
restarted before it finished is started again from the inputs kept in its handle.

Outputs: `summary` (JSON), `features` (GeoJSON FeatureCollection: plumes, sources, plot outlines, each with its
`collection`), `report` (HTML with an inline SVG map and chart). A synchronous request gets `{"summary",
"features"}` as JSON, or the one output it names in `outputs` (`{"outputs": {"report": {}}}` → text/html). A job's
results document has the summary, and the features and the report as files (`/jobs/{id}/results/files/...`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from geofed import errors
from geofed.http.loop import run_sync
from geofed.jobs.protocol import JobContext, JobProgress
from geofed.ogc.process import UpstreamProcessor, processor_error
from geofed.ogc.process import process_input as _input
from geofed.settings import get_settings
from providers.inventory import compute, report
from providers.inventory.inputs import DEFAULT_CLOUD_COVER_MAX, GASES, Inputs, check_sync, parse_inputs

FILES = {"features.geojson": "application/geo+json", "report.html": "text/html; charset=utf-8",
         "summary.json": "application/json"}
OUTPUT_TYPES = {"summary": "application/json", "features": "application/geo+json", "report": "text/html"}

PROCESS_METADATA: dict[str, Any] = {
    "version": "1.0.0",
    "id": "emissions-inventory",
    "title": {"en": "Emissions inventory of an area"},
    "description": {"en": (
        "What is emitting in an area, how much, and what imagery could confirm it, read in parallel from "
        "CarbonMapper (plumes in the period, per gas and sector: count, sum and mean of emission_auto in kg/h with "
        "the combined uncertainty √Σσ², the ten largest; sources with persistence, mean emission and plume "
        "count), Epoch (plots of the given collections: count, area in ha, annual LUC, biogenic, SOC and removal "
        "sums in tCO2e/yr and net = −LUC + biogenic + SOC − removal), Sentinel Hub (sentinel-2-l2a scenes and the "
        "dates with cloud cover ≤ cloud_cover_max) and SpaceKnow (scenes per dataset; searches only, no credits "
        "are spent). An upstream that fails is left out and named (partial answer); all failing is a 502. "
        "Synchronous up to 20 000 km² and 5 000 plumes + sources + plots (GEOFED_INVENTORY_SYNC_MAX_KM2, "
        "GEOFED_INVENTORY_SYNC_MAX_FEATURES); above that send 'Prefer: respond-async' (a job with progress). "
        "Areas over 1 000 000 km² (GEOFED_INVENTORY_MAX_KM2) are refused.")},
    "jobControlOptions": ["sync-execute", "async-execute"],
    "outputTransmission": ["value"],
    "keywords": ["emissions", "inventory", "methane", "CarbonMapper", "Epoch", "Sentinel Hub", "SpaceKnow"],
    "links": [],
    "inputs": {
        "geometry": _input("Area of interest", "GeoJSON Polygon or MultiPolygon, WGS84 lon/lat; valid (no "
                           "self-intersection)", {"type": "object", "contentMediaType": "application/geo+json"},
                           required=True),
        "datetime": _input("Period", "RFC 3339 interval start/end (dates cover whole days)",
                           {"type": "string", "example": "2023-01-01/2024-12-31"}, required=True),
        "gases": _input("Gases", "plume and source gases to include",
                        {"type": "array", "items": {"type": "string", "enum": list(GASES)}, "default": list(GASES)}),
        "epoch_collections": _input("Epoch collections", "Epoch collections (filename) whose plots to include; "
                                    "none: no Epoch section", {"type": "array", "items": {"type": "string"},
                                                               "maxItems": 10}),
        "imagery": _input("Imagery", "search Sentinel Hub and SpaceKnow scenes to confirm with",
                          {"type": "boolean", "default": True}),
        "cloud_cover_max": _input("Cloud cover maximum", "Sentinel Hub scenes at most this cloudy (%) are listed "
                                  "by date", {"type": "number", "minimum": 0, "maximum": 100,
                                              "default": DEFAULT_CLOUD_COVER_MAX}),
    },
    "outputs": {
        "summary": {"title": "Summary", "schema": {"type": "object", "contentMediaType": "application/json"}},
        "features": {"title": "Features", "description": "plumes, sources and plot outlines, each with its "
                     "collection", "schema": {"type": "object", "contentMediaType": "application/geo+json"}},
        "report": {"title": "Report", "description": "HTML page with an inline SVG map and bar chart",
                   "schema": {"type": "string", "contentMediaType": "text/html"}},
    },
    "example": {"inputs": {
        "geometry": {"type": "Polygon", "coordinates": [[[-103.9, 31.7], [-103.3, 31.7], [-103.3, 32.2],
                                                         [-103.9, 32.2], [-103.9, 31.7]]]},
        "datetime": "2023-01-01/2024-12-31", "gases": ["CH4"], "imagery": True, "cloud_cover_max": 20}},
}


@dataclass
class Run:
    """A job's fan-out on the upstream loop (this server's memory; the handle is what survives)."""

    task: asyncio.Task[compute.Result]
    progress: compute.Progress = field(default_factory=compute.Progress)
    message: str = "reading the upstreams"


RUNS: dict[str, Run] = {}  # job id → its run; touched on the upstream loop only


def _start(key: str, inputs: Inputs) -> Run:
    progress = compute.Progress()
    task = asyncio.ensure_future(compute.run(inputs, sync=False, max_features=0, progress=progress))
    run = Run(task, progress)
    progress.on_change = lambda percent, message: setattr(run, "message", message)
    RUNS[key] = run
    return run


def _outputs(result: compute.Result, wanted: dict[str, Any] | None) -> tuple[str, Any]:
    names = [n for n in (wanted or {}) if n in OUTPUT_TYPES]
    unknown = sorted(set(wanted or {}) - set(OUTPUT_TYPES))
    if unknown:
        raise errors.InvalidParameter(f"unknown output {', '.join(unknown)}; the outputs are "
                                      f"{', '.join(OUTPUT_TYPES)}", parameter="outputs")
    if len(names) == 1:
        name = names[0]
        if name == "report":
            return "text/html", report.render(result.summary, result.features)
        return OUTPUT_TYPES[name], result.summary if name == "summary" else result.feature_collection()
    if "report" in names:
        raise errors.InvalidParameter("the report (text/html) is an output of its own: ask for it alone",
                                      parameter="outputs")
    return "application/json", {"summary": result.summary, "features": result.feature_collection()}


class InventoryProcessor(UpstreamProcessor):
    """pygeoapi processor (sync) and `UpstreamJobProcess` (async) of `emissions-inventory`."""

    PROCESS_METADATA: ClassVar[dict[str, Any]] = PROCESS_METADATA

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.PROCESS_METADATA)
        self.supports_outputs = True

    def execute(self, data: dict[str, Any], outputs: dict[str, Any] | None = None) -> tuple[str, Any]:
        try:
            return run_sync(self._sync(data or {}, outputs))
        except errors.GeofedError as exc:
            raise processor_error(exc) from None

    async def _sync(self, data: dict[str, Any], outputs: dict[str, Any] | None) -> tuple[str, Any]:
        inputs = parse_inputs(data)
        check_sync(inputs)
        result = await compute.run(inputs, sync=True, max_features=get_settings().inventory_sync_max_features)
        return _outputs(result, outputs)

    # ------------------------------------------------------------------ UpstreamJobProcess
    async def submit(self, inputs: dict[str, Any], job: JobContext) -> dict[str, Any]:
        checked = parse_inputs(inputs or {})
        _start(job.job_id, checked)
        return {"run": job.job_id, "inputs": checked.to_json()}

    async def poll(self, handle: dict[str, Any]) -> JobProgress:
        if "summary" in handle:
            return JobProgress("successful", 100, "inventory complete")
        run = RUNS.get(handle["run"])
        if run is None:  # this server restarted (or another replica started it): run it again from its inputs
            _start(handle["run"], Inputs.from_json(handle["inputs"]))
            return JobProgress("running", 5, "started again (the server that ran it is gone)")
        if not run.task.done():
            return JobProgress("running", run.progress.percent, run.message)
        RUNS.pop(handle["run"], None)
        if run.task.cancelled():
            return JobProgress("dismissed", None, "inventory cancelled")
        exc = run.task.exception()
        if exc is not None:
            message = exc.message if isinstance(exc, errors.GeofedError) else "the inventory failed"
            return JobProgress("failed", None, message)
        result = run.task.result()
        done = "inventory complete" + (f"; partial: {', '.join(result.summary['failed'])} failed"
                                       if result.summary["partial"] else "")
        return JobProgress("successful", 100, done,
                           handle={**handle, "summary": result.summary, "features": result.features})

    async def results(self, handle: dict[str, Any], job: JobContext) -> dict[str, Any]:
        if "summary" not in handle:
            raise errors.NotFound("the inventory has not finished")
        return {"summary": handle["summary"],
                "features": {"href": f"{job.results_url}/files/features.geojson", "type": OUTPUT_TYPES["features"]},
                "report": {"href": f"{job.results_url}/files/report.html", "type": OUTPUT_TYPES["report"]}}

    async def open_file(self, handle: dict[str, Any], file_id: str) -> tuple[str, AsyncIterator[bytes]]:
        if file_id not in FILES:
            raise errors.NotFound(f"job has no result file '{file_id}'; its files are {', '.join(FILES)}",
                                  parameter="file_id")
        if "summary" not in handle:
            raise errors.NotFound("the inventory has not finished")
        summary, features = handle["summary"], handle["features"]
        if file_id == "report.html":
            body = report.render(summary, features).encode()
        elif file_id == "features.geojson":
            body = orjson.dumps(compute.Result(summary, features).feature_collection())
        else:
            body = orjson.dumps(summary)
        return FILES[file_id], _chunks(body)

    async def cancel(self, handle: dict[str, Any]) -> None:
        run = RUNS.pop(handle.get("run", ""), None)
        if run is not None:
            run.task.cancel()


async def _chunks(body: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for at in range(0, len(body), size):
        yield body[at:at + size]
