"""`appeears-extract`: an AppEEARS area or point extraction as an async-only OGC API process.

The job manager (`geofed.jobs`) drives it through `geofed.jobs.protocol.UpstreamJobProcess`: the job's handle is
the AppEEARS task id; status mirrors `GET /status/{id}` (+ `GET /task/{id}`); results are the bundle's files,
served through geofed; dismissing deletes the task upstream.
"""

from __future__ import annotations

from typing import Any, ClassVar

from geofed import errors
from geofed.jobs.protocol import JobContext, JobProgress
from geofed.ogc.process import AsyncOnlyProcessor
from geofed.ogc.process import process_input as _input
from providers.appeears import records
from providers.appeears.client import TITLE, AppeearsClient, BundleFileStream
from providers.appeears.inputs import DEFAULT_PROJECTION, FILE_TYPES, task_request

_LAYER = {"type": "object", "required": ["product", "layer"],
          "properties": {"product": {"type": "string", "description": "ProductAndVersion, e.g. MOD11A1.061"},
                         "layer": {"type": "string", "description": "layer name, e.g. LST_Day_1km"}}}
_POINT = {"type": "object", "required": ["latitude", "longitude"],
          "properties": {"latitude": {"type": "number", "minimum": -90, "maximum": 90},
                         "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                         "id": {"type": "string"}, "category": {"type": "string"}}}



PROCESS_METADATA: dict[str, Any] = {
    "version": "1.0.0",
    "id": "appeears-extract",
    "title": {"en": "NASA AppEEARS area/point extraction"},
    "description": {"en": (
        "Extracts layers of NASA land products (MODIS, VIIRS, SRTM, ECOSTRESS, ...) for an area (GeoTIFF or "
        "netCDF-4 files) or for points (CSV) through NASA AppEEARS. Asynchronous only: send "
        "'Prefer: respond-async'. Results are the AppEEARS bundle files, downloaded through geofed.")},
    "jobControlOptions": ["async-execute"],
    "outputTransmission": ["value", "reference"],
    "keywords": ["AppEEARS", "MODIS", "VIIRS", "extraction", "time series"],
    "links": [{"type": "text/html", "rel": "about", "title": "AppEEARS API documentation",
               "href": "https://appeears.earthdatacloud.nasa.gov/api/", "hreflang": "en-US"}],
    "inputs": {
        "task_type": _input("Task type", "area (raster subsets) or point (sample time series)",
                            {"type": "string", "enum": ["area", "point"]}, required=True),
        "task_name": _input("Task name", "a name for the AppEEARS task (default: 'geofed-' followed by the job "
                            "id); a name of its own lets geofed find the task even if AppEEARS' answer omits its id",
                            {"type": "string", "maxLength": 200}),
        "layers": _input("Layers", "product layers to extract, checked against the AppEEARS catalog. Valid products "
                         "are the collections appeears:{ProductAndVersion} of /stac/collections; a product's layer "
                         "names are its summaries `appeears:layers` (e.g. /stac/collections/appeears:MOD13Q1.061 "
                         "lists _250m_16_days_NDVI), as AppEEARS' GET /product/{ProductAndVersion} names them",
                         {"type": "array", "items": _LAYER, "minItems": 1}, required=True),
        "start_date": _input("Start date", "first day (ISO date)", {"type": "string", "format": "date"}, True),
        "end_date": _input("End date", "last day (ISO date)", {"type": "string", "format": "date"}, True),
        "recurring": _input("Recurring", "repeat the month-day range of start/end_date every year of year_range",
                            {"type": "boolean", "default": False}),
        "year_range": _input("Year range", "[first year, last year] of a recurring range",
                             {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}),
        "geometry": _input("Area", "area tasks: GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection (WGS84)",
                           {"type": "object", "contentMediaType": "application/geo+json"}),
        "points": _input("Points", "point tasks: [{latitude, longitude, id?, category?}]",
                         {"type": "array", "items": _POINT, "minItems": 1}),
        "file_type": _input("File type", "area tasks: output format",
                            {"type": "string", "enum": list(FILE_TYPES), "default": "geotiff"}),
        "projection": _input("Projection", "area tasks: a projection Name from AppEEARS /spatial/proj",
                             {"type": "string", "default": DEFAULT_PROJECTION}),
    },
    "outputs": {
        "files": {"title": "Bundle files", "description": "links to the result files (name, size, media type, "
                  "sha256), streamed through geofed",
                  "schema": {"type": "array", "items": {"type": "object"}}},
        "bundle_type": {"title": "Bundle type", "description": "area (GeoTIFF or netCDF-4 files) or point (CSV "
                        "files), as the task type", "schema": {"type": "string", "enum": ["area", "point"]}},
    },
    "example": {"inputs": {
        "task_type": "point", "task_name": "harvard-forest-lst", "start_date": "2020-01-01",
        "end_date": "2020-01-31", "layers": [{"product": "MOD11A1.061", "layer": "LST_Day_1km"}],
        "points": [{"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1", "category": "DBF"}]}},
}


class AppeearsExtractProcessor(AsyncOnlyProcessor):
    """pygeoapi processor (async only) and `UpstreamJobProcess` for the job manager."""

    PROCESS_METADATA: ClassVar[dict[str, Any]] = PROCESS_METADATA  # read by the resource renderer

    requires_api_key = True  # runs extractions on geofed's AppEEARS account (geofed.jobs.access)

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.PROCESS_METADATA)

    # ------------------------------------------------------------------ UpstreamJobProcess
    async def submit(self, inputs: dict[str, Any], job: JobContext) -> dict[str, Any]:
        client = AppeearsClient()
        task = await task_request(client, inputs or {}, default_name=f"geofed-{job.job_id}")
        return {"task_id": await client.submit_task(task), "task_type": task["task_type"]}

    async def poll(self, handle: dict[str, Any]) -> JobProgress:
        client = AppeearsClient()
        task_id = handle["task_id"]
        try:
            http_status, status = await client.status(task_id)
            task = None if http_status == 303 else await client.task(task_id)
        except errors.UpstreamNotFound:
            return JobProgress("failed", None, f"{TITLE} no longer knows task {task_id} (deleted upstream)")
        return records.job_progress(http_status, status, task)

    async def results(self, handle: dict[str, Any], job: JobContext) -> dict[str, Any]:
        bundle = await AppeearsClient().bundle(handle["task_id"])
        return records.results_document(bundle, job.results_url)

    async def open_file(self, handle: dict[str, Any], file_id: str) -> tuple[str, BundleFileStream]:
        """The file's media type and its bytes, streamed from AppEEARS and checked against the bundle's sha256.

        The stream also carries `filename` and `size` (for Content-Disposition / Content-Length)."""
        client = AppeearsClient()
        bundle = await client.bundle(handle["task_id"])
        entry = records.bundle_file(bundle, file_id)
        if entry is None:
            raise errors.NotFound(f"job has no result file '{file_id}'", parameter="file_id")
        stream = await client.open_file(handle["task_id"], file_id)
        stream.expect(entry.get("sha256"), entry.get("file_size"))
        stream.filename = records.file_name(str(entry.get("file_name", file_id))).rsplit("/", 1)[-1]
        return records.media_type(entry.get("file_type"), str(entry.get("file_name", ""))), stream

    async def cancel(self, handle: dict[str, Any]) -> None:
        await AppeearsClient().delete_task(handle["task_id"])
