"""The one mapping from a SpaceKnow scene (search result or get-metadata answer) to a GeoJSON feature (OGC face)
and a STAC item (STAC face).

Features and items carry the same properties under the same names (STAC common names and the view/proj
extensions' names are used on both faces), so `STAC_NAMES` is empty and a filter means the same on both faces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely.geometry

from geofed.errors import UpstreamError
from geofed.query import ItemContext, instant, rfc3339

UPSTREAM_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # SpaceKnow datetimes: UTC, no `T`/`Z`
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/view/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
]
# feature property → STAC item property where the faces differ ("" = not on items): they do not differ
STAC_NAMES: dict[str, str] = {}
# eo common band names that SpaceKnow band `names` use. Bands go to `spaceknow:bands`: STAC 1.1 core (and eo) allow
# `bands` / `eo:bands` in item properties only when an asset carries bands, and a search result has no assets.
COMMON_NAMES = {"coastal", "blue", "green", "red", "rededge", "yellow", "pan", "nir", "nir08", "nir09", "cirrus",
                "swir16", "swir22", "lwir", "lwir11", "lwir12"}


def scene_time(scene: dict[str, Any]) -> dt.datetime:
    """A scene's `datetime` (`YYYY-MM-DD HH:MM:SS`, UTC). Every scene has one; an unreadable one is a 502."""
    value = scene.get("datetime")
    moment = instant(value)
    if moment is None:
        raise UpstreamError(f"SpaceKnow sent a scene datetime geofed cannot read: {value!r}", upstream="spaceknow")
    return moment


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
    """The properties both faces carry; a field the scene lacks is left out."""
    bands = scene.get("bands") or []
    gsds = [b["gsd"] for b in bands if isinstance(b, dict) and isinstance(b.get("gsd"), int | float)]
    props: dict[str, Any] = {
        "datetime": rfc3339(scene_time(scene)),
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
        "spaceknow:bands": [_band(b) for b in bands if isinstance(b, dict)] or None,
        "spaceknow:foreign_id": scene.get("foreignId"),
        "spaceknow:downloadable": scene.get("downloadable"),
    }
    return {k: v for k, v in props.items() if v is not None}


def to_feature(scene: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": scene["sceneId"], "geometry": scene.get("footprint"),
            "properties": properties(scene)}


def to_item(scene: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    """A STAC 1.1 item (links are added by the STAC face; a search result has no assets)."""
    footprint = scene.get("footprint")
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": scene["sceneId"],
        "collection": ctx.collection_id,
        "geometry": footprint,
        "properties": properties(scene),
        "links": [],
        "assets": {},
    }
    if footprint:
        item["bbox"] = list(shapely.geometry.shape(footprint).bounds)
    return item
