"""The one mapping of a station record to a GeoJSON feature and a STAC item."""

from __future__ import annotations

from typing import Any

from geofed.query import ItemContext

STAC_NAMES = {"measured_at": "datetime"}
PROPERTIES = ("name", "network", "ch4_ppb")


def _geometry(record: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [record["lon"], record["lat"]]}


def to_feature(record: dict[str, Any]) -> dict[str, Any]:
    props = {k: record[k] for k in PROPERTIES} | {"measured_at": record["measured_at"]}
    return {"type": "Feature", "id": record["station_id"], "geometry": _geometry(record), "properties": props}


def to_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    lon, lat = record["lon"], record["lat"]
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": record["station_id"], "collection": ctx.collection_id,
        "geometry": _geometry(record), "bbox": [lon, lat, lon, lat],
        "properties": {k: record[k] for k in PROPERTIES} | {"datetime": record["measured_at"]},
        "links": [], "assets": {},
    }
