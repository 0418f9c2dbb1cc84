"""`sentinelhub-statistics`: a sync OGC API process over Sentinel Hub's Statistical API (any polygon)."""

from __future__ import annotations

from typing import Any

from geofed.ogc.process import UpstreamProcessor
from geofed.ogc.process import process_input as _input
from providers.sentinelhub import statistics
from providers.sentinelhub.statistics import DEFAULT_COLLECTION, DEFAULT_INTERVAL, PRESETS

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
    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, PROCESS_METADATA)

    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:
        return "application/json", await statistics.run(data)
