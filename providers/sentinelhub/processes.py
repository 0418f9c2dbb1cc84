"""`sentinelhub-statistics`: a sync OGC API process over Sentinel Hub's Statistical API (any polygon).

Inputs → upstream request → time series. Request shape: digest §2.4 (`input.bounds` + `input.data`,
`aggregation` with `timeRange`, `aggregationInterval`, `resx`/`resy`, `evalscript`). Presets are the usual
normalised-difference evalscripts; each returns the index as output `index` and a `dataMask` output, so the
upstream counts no-data pixels.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import isodate
from shapely.geometry import shape

from geofed import errors
from geofed.ogc.process import UpstreamProcessor
from geofed.ogc.process import process_input as _input
from geofed.query import parse_datetime, parse_geometry, parse_number, rfc3339
from providers.sentinelhub import records
from providers.sentinelhub.client import NAME, TITLE, Catalog, SentinelHubClient

DEFAULT_COLLECTION = "sentinel-2-l2a"
DEFAULT_INTERVAL = "P1D"
POLYGONS = ("Polygon", "MultiPolygon")
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
# The only `lastIntervalBehavior` the doc shows: an incomplete last interval is left out.
LAST_INTERVAL_BEHAVIOUR = "SKIP"
PRESETS: dict[str, tuple[str, str]] = {  # index → (a, b) of (a - b) / (a + b)
    "NDVI": ("B08", "B04"),
    "NDWI": ("B03", "B08"),
    "NBR": ("B08", "B12"),
}
STAT_KEYS = ("mean", "min", "max", "stDev", "sampleCount", "noDataCount")
METRES_PER_DEGREE_LAT = 110_574.0
METRES_PER_DEGREE_LON_AT_EQUATOR = 111_320.0

_STATS = {"type": ["number", "null"]}
_SERIES_ENTRY = {
    "type": "object",
    "required": ["interval"],
    "properties": {
        "interval": {"type": "object", "properties": {"from": {"type": "string", "format": "date-time"},
                                                      "to": {"type": "string", "format": "date-time"}}},
        "mean": _STATS, "min": _STATS, "max": _STATS, "stDev": _STATS,
        "sampleCount": {"type": ["integer", "null"]}, "noDataCount": {"type": ["integer", "null"]},
        "bands": {"type": "object", "description": "every output/band of a multi-output evalscript"},
        "error": {"type": "string", "description": "the upstream's error type for this interval"},
    },
}

PROCESS_METADATA: dict[str, Any] = {
    "version": "1.0.0",
    "id": "sentinelhub-statistics",
    "title": {"en": "Sentinel Hub statistics"},
    "description": {"en": "Time series of an index (NDVI, NDWI, NBR) or of your own evalscript over any polygon, "
                          "from Sentinel Hub's Statistical API: per interval the mean, min, max, standard deviation, "
                          "sample count and no-data count. Only intervals with an acquisition are listed."},
    "jobControlOptions": ["sync-execute"],
    "outputTransmission": ["value"],
    "keywords": ["Sentinel Hub", "statistics", "NDVI", "time series", "Sentinel-2"],
    "links": [{"type": "text/html", "rel": "about", "title": "Sentinel Hub Statistical API",
               "href": "https://docs.sentinel-hub.com/api/latest/api/statistical/", "hreflang": "en-US"}],
    "inputs": {
        "geometry": _input("Area of interest", "GeoJSON Polygon or MultiPolygon in WGS84 (a Feature is accepted).",
                           {"type": "object", "required": ["type", "coordinates"],
                            "properties": {"type": {"type": "string", "enum": ["Polygon", "MultiPolygon"]}}},
                           required=True),
        "collection": _input("Collection", "Sentinel Hub collection (e.g. sentinel-2-l2a, sentinel-2-l1c, "
                             "sentinel-1-grd; `sentinelhub:` prefix optional).",
                             {"type": "string", "default": DEFAULT_COLLECTION}),
        "start": _input("Start", "RFC 3339 date or date-time (inclusive).",
                        {"type": "string", "format": "date-time"}, required=True),
        "end": _input("End", "RFC 3339 date or date-time (exclusive; a date covers its whole day).",
                      {"type": "string", "format": "date-time"}, required=True),
        "interval": _input("Aggregation interval",
                           "ISO 8601 duration (P1D, P5D, P1W, P1M); an incomplete last interval is left out.",
                           {"type": "string", "default": DEFAULT_INTERVAL}),
        "index": _input("Index preset", "Index computed per pixel (optical collections).",
                        {"type": "string", "enum": list(PRESETS), "default": "NDVI"}),
        "evalscript": _input("Evalscript", "Your own evalscript V3 instead of a preset; declare a dataMask output "
                             "so no-data pixels are counted.", {"type": "string"}),
        "resolution": _input("Resolution", "Pixel size in metres (default: the collection's gsd).",
                             {"type": "number", "exclusiveMinimum": 0}),
        "max_cloud_coverage": _input("Maximum cloud cover", "Skip acquisitions cloudier than this (percent).",
                                     {"type": "number", "minimum": 0, "maximum": 100}),
    },
    "outputs": {
        "statistics": {
            "title": "Statistics time series",
            "description": "The request echoed (collection, index, start, end, interval, resolution in metres, "
                           "max_cloud_coverage) and `series`: one entry per interval with an acquisition, with the "
                           "mean, min, max, stDev, sampleCount and noDataCount of the index over the polygon "
                           "(null where no pixel was valid); `bands` holds every output/band of a multi-output "
                           "evalscript.",
            "schema": {"type": "object", "contentMediaType": "application/json",
                       "properties": {"collection": {"type": "string"}, "index": {"type": "string"},
                                      "interval": {"type": "string"}, "resolution": {"type": "number"},
                                      "series": {"type": "array", "items": _SERIES_ENTRY}}},
        }
    },
    "example": {
        "inputs": {
            "geometry": {"type": "Polygon", "coordinates": [[[13.60, 45.55], [13.85, 45.55], [13.85, 45.75],
                                                             [13.60, 45.75], [13.60, 45.55]]]},
            "collection": "sentinel-2-l2a",
            "start": "2023-05-01",
            "end": "2023-08-31",
            "interval": "P10D",
            "index": "NDVI",
            "resolution": 20,
            "max_cloud_coverage": 40,
        }
    },
}


class StatisticsProcessor(UpstreamProcessor):
    PROCESS_METADATA: ClassVar[dict[str, Any]] = PROCESS_METADATA  # read by the resource renderer

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.PROCESS_METADATA)

    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:
        return "application/json", await compute(data)


def preset_evalscript(index: str) -> str:
    a, b = PRESETS[index]
    return f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: ["{a}", "{b}", "dataMask"]}}],
    output: [{{id: "index", bands: 1, sampleType: "FLOAT32"}}, {{id: "dataMask", bands: 1}}]
  }};
}}
function evaluatePixel(samples) {{
  let index = (samples.{a} - samples.{b}) / (samples.{a} + samples.{b});
  return {{index: [index], dataMask: [samples.dataMask]}};
}}
"""


@dataclass
class StatisticsInputs:
    geometry: dict[str, Any]
    collection: str  # native id
    start: dt.datetime
    end: dt.datetime  # exclusive
    interval: str
    index: str | None  # a preset name, None for a caller's evalscript
    evalscript: str
    resolution: float | None
    max_cloud_coverage: float | None


def parse_inputs(data: dict[str, Any]) -> StatisticsInputs:
    """Validates the process inputs; every problem is a 400 naming the input."""
    geometry = parse_geometry(data.get("geometry"), "geometry", types=POLYGONS)
    if geometry is None:
        raise errors.InvalidParameter("'geometry' is required: a GeoJSON Polygon or MultiPolygon",
                                      parameter="geometry")
    collection = records.native_id(str(data.get("collection") or DEFAULT_COLLECTION))
    start = _instant(data.get("start"), "start", end=False)
    end = _instant(data.get("end"), "end", end=True)
    if start >= end:
        raise errors.InvalidParameter("'start' must be before 'end'", parameter="start")
    interval = _interval(data.get("interval") or DEFAULT_INTERVAL)
    evalscript, index = data.get("evalscript"), data.get("index")
    if evalscript is not None:
        if index is not None:
            raise errors.InvalidParameter("give either 'index' or 'evalscript', not both", parameter="index")
        if not isinstance(evalscript, str) or not evalscript.strip():
            raise errors.InvalidParameter("'evalscript' must be a non-empty string", parameter="evalscript")
        preset = None
    else:
        preset = str(index or "NDVI").upper()
        if preset not in PRESETS:
            raise errors.InvalidParameter(f"'index' must be one of {', '.join(PRESETS)}; got {index!r}",
                                          parameter="index")
        evalscript = preset_evalscript(preset)
    resolution = None
    if data.get("resolution") is not None:
        resolution = parse_number(data["resolution"], "resolution")
        if not 0 < resolution <= 100_000:
            raise errors.InvalidParameter("'resolution' must be a positive number of metres", parameter="resolution")
    max_cc = None
    if data.get("max_cloud_coverage") is not None:
        max_cc = parse_number(data["max_cloud_coverage"], "max_cloud_coverage")
        if not 0 <= max_cc <= 100:
            raise errors.InvalidParameter("'max_cloud_coverage' must be between 0 and 100",
                                          parameter="max_cloud_coverage")
    return StatisticsInputs(geometry, collection, start, end, interval, preset, evalscript, resolution, max_cc)


def _instant(value: Any, name: str, end: bool) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidParameter(f"'{name}' is required: an RFC 3339 date or date-time", parameter=name)
    parsed = parse_datetime(value, name)
    if end and len(value.strip()) == 10:
        parsed += dt.timedelta(days=1)  # a date-only end covers its whole day
    return parsed


def _interval(value: Any) -> str:
    text = str(value).strip().upper()
    try:
        duration = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError):
        raise errors.InvalidParameter(f"'interval' must be an ISO 8601 duration such as P1D or P1M; got {value!r}",
                                      parameter="interval") from None
    positive = duration.total_seconds() > 0 if isinstance(duration, dt.timedelta) else (
        duration.years > 0 or duration.months > 0 or duration.tdelta.total_seconds() > 0)
    if not positive:
        raise errors.InvalidParameter("'interval' must be a positive duration", parameter="interval")
    return text


def degrees(resolution_m: float, geometry: dict[str, Any]) -> tuple[float, float]:
    """Metres → degrees at the geometry's centre: with CRS84 bounds, resx/resy are in degrees (the request
    CRS's units). Locally exact enough for areas of interest up to a few hundred km."""
    lat = shape(geometry).centroid.y
    resx = resolution_m / (METRES_PER_DEGREE_LON_AT_EQUATOR * max(math.cos(math.radians(lat)), 0.01))
    return resx, resolution_m / METRES_PER_DEGREE_LAT


def build_request(inputs: StatisticsInputs, resolution: float) -> dict[str, Any]:
    resx, resy = degrees(resolution, inputs.geometry)
    data: dict[str, Any] = {"type": inputs.collection}
    if inputs.max_cloud_coverage is not None:
        data["dataFilter"] = {"maxCloudCoverage": inputs.max_cloud_coverage}
    return {
        "input": {"bounds": {"geometry": inputs.geometry, "properties": {"crs": CRS84}}, "data": [data]},
        "aggregation": {
            "timeRange": {"from": rfc3339(inputs.start), "to": rfc3339(inputs.end)},
            "aggregationInterval": {"of": inputs.interval, "lastIntervalBehavior": LAST_INTERVAL_BEHAVIOUR},
            "resx": resx,
            "resy": resy,
            "evalscript": inputs.evalscript,
        },
    }


def to_series(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Upstream `data` → one entry per interval: the first output's first band flat, all bands under `bands`
    when the evalscript has more than one; a per-interval upstream error stays visible as `error`."""
    series = []
    for entry in payload.get("data") or []:
        row: dict[str, Any] = {"interval": entry.get("interval")}
        if entry.get("error"):
            row["error"] = (entry["error"] or {}).get("type", "ERROR")
        bands = {
            f"{output}/{band}": _stats(values.get("stats") or {})
            for output, body in (entry.get("outputs") or {}).items()
            for band, values in ((body or {}).get("bands") or {}).items()
        }
        if bands:
            row.update(next(iter(bands.values())))
            if len(bands) > 1:
                row["bands"] = bands
        series.append(row)
    return series


def _stats(stats: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _number(stats.get(key)) for key in STAT_KEYS}
    if stats.get("percentiles"):
        out["percentiles"] = {k: _number(v) for k, v in stats["percentiles"].items()}
    return out


def _number(value: Any) -> float | int | None:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return value
    return None  # the upstream writes "NaN" when an interval has no valid pixel


async def compute(data: dict[str, Any], client: SentinelHubClient | None = None) -> dict[str, Any]:
    inputs = parse_inputs(data)
    client = client or SentinelHubClient()
    try:
        collection = await client.collection(inputs.collection)
    except errors.UpstreamNotFound:
        known = sorted(c["id"] for c in await Catalog(client).collections())
        raise errors.NotFound(f"'collection': {inputs.collection!r} is not a {TITLE} collection; valid ones: "
                              f"{', '.join(known)} (listed at /stac/collections as sentinelhub:<id>)",
                              parameter="collection", upstream=NAME) from None
    summaries = collection.get("summaries") or {}
    optical = "eo:cloud_cover" in summaries or "eo:bands" in summaries
    if not optical and inputs.index is not None:
        raise errors.InvalidParameter(
            f"index {inputs.index} needs optical bands; {inputs.collection} has none: give an 'evalscript'",
            parameter="index")
    if not optical and inputs.max_cloud_coverage is not None:
        raise errors.InvalidParameter(f"{inputs.collection} has no cloud cover: leave 'max_cloud_coverage' out",
                                      parameter="max_cloud_coverage")
    resolution = inputs.resolution or float((summaries.get("gsd") or [10])[0])
    payload = await client.statistics(build_request(inputs, resolution))
    return {
        "collection": inputs.collection,
        "index": inputs.index or "evalscript",
        "start": rfc3339(inputs.start),
        "end": rfc3339(inputs.end),
        "interval": inputs.interval,
        "resolution": resolution,
        "max_cloud_coverage": inputs.max_cloud_coverage,
        "series": to_series(payload),
    }
