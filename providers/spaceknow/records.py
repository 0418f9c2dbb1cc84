"""One mapping from a SpaceKnow scene (search result or get-metadata answer) to a GeoJSON feature and a STAC item.

Both faces use it, so ids, geometry, datetime and properties never disagree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely.geometry

from geofed.errors import UpstreamError

COLLECTION_ID = "spaceknow-scenes"
UPSTREAM_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # SpaceKnow datetimes: UTC, no `T`/`Z`
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/view/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
]
# The collection document's own extensions. Not the items': an extension listed on a Collection must show in
# its summaries, assets or item_assets (the view schema fails a Collection without one), and the collection
# has no view or proj summaries to give (nothing is known of the archive before a search).
STAC_EXTENSIONS: list[str] = []
# eo common band names that SpaceKnow band `names` use. Bands go to `spaceknow:bands`: STAC 1.1 core (and eo) allow
# `bands` / `eo:bands` in item properties only when an asset carries bands, and a search result has no assets.
COMMON_NAMES = {"coastal", "blue", "green", "red", "rededge", "yellow", "pan", "nir", "nir08", "nir09", "cirrus",
                "swir16", "swir22", "lwir", "lwir11", "lwir12"}


def parse_time(value: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(value, UPSTREAM_TIME_FORMAT).replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise UpstreamError(f"SpaceKnow sent a scene datetime geofed cannot read: {value!r}",
                            upstream="spaceknow") from None


def format_time(value: dt.datetime) -> str:
    """A datetime as SpaceKnow wants it in requests (UTC, second precision)."""
    return value.astimezone(dt.UTC).strftime(UPSTREAM_TIME_FORMAT)


def _band(band: dict[str, Any]) -> dict[str, Any]:
    names = [str(n) for n in band.get("names") or []]
    common = next((n for n in names if n in COMMON_NAMES), None)
    out: dict[str, Any] = {"name": common or (names[0] if names else "band")}
    if common:
        out["common_name"] = common
    if band.get("gsd") is not None:
        out["gsd"] = band["gsd"]
    return out


def properties(scene: dict[str, Any]) -> dict[str, Any]:
    bands = scene.get("bands") or []
    gsds = [b["gsd"] for b in bands if isinstance(b.get("gsd"), int | float)]
    props: dict[str, Any] = {
        "datetime": parse_time(scene.get("datetime", "")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provider": scene.get("provider"),
        "dataset": scene.get("dataset"),
        "satellite": scene.get("satellite"),
        "platform": str(scene["satellite"]).lower() if scene.get("satellite") else None,
        "gsd": min(gsds) if gsds else None,
        "view:off_nadir": scene.get("offNadir"),
        "view:azimuth": scene.get("satelliteAzimuth"),
        "view:sun_azimuth": scene.get("sunAzimuth"),
        "view:sun_elevation": scene.get("sunElevation"),
        "proj:code": f"EPSG:{scene['crsEpsg']}" if scene.get("crsEpsg") else None,
        "spaceknow:bands": [_band(b) for b in bands],
        "spaceknow:foreign_id": scene.get("foreignId"),
        "spaceknow:downloadable": scene.get("downloadable"),
    }
    return {k: v for k, v in props.items() if v is not None}


def to_feature(scene: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": scene["sceneId"], "geometry": scene.get("footprint"),
            "properties": properties(scene)}


def to_item(scene: dict[str, Any], collection_id: str = COLLECTION_ID) -> dict[str, Any]:
    footprint = scene.get("footprint")
    bbox = list(shapely.geometry.shape(footprint).bounds) if footprint else None
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ITEM_EXTENSIONS,
        "id": scene["sceneId"],
        "collection": collection_id,
        "geometry": footprint,
        "properties": properties(scene),
        "links": [],
        "assets": {},
    }
    if bbox:
        item["bbox"] = bbox
    return item
