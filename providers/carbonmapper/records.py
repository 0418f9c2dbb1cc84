"""The one mapping from CarbonMapper records to GeoJSON features (OGC face) and STAC items (STAC face).

Records are the upstream's JSON objects, with two things geofed adds before mapping:
- plumes: `source_name` (joined from `sources.geojson`: the API has no plume → source key) when known;
- sources: the `sources.geojson` feature and the `source/{name}` detail are normalised to one record,
  `{"point": GeoJSON Point, **source properties}`.
The upstream's UUID `id` becomes the property `uuid`: `id` is the feature id (the plume or scene name), and a
property of the same name would shadow it in CQL2 and in GDAL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pystac
from pystac.extensions.view import ViewExtension
from pystac.utils import str_to_datetime

GASES = ("CH4", "CO2")
SECTORS = ("1B2", "6A", "6B", "4B", "1B1a", "1A1", "other", "NULL", "NA")
INSTRUMENTS = ("GAO", "ang", "av3", "emi", "tan", "ssc")
QUALITIES = ("good", "questionable", "bad")

PLUMES = "carbonmapper-plumes"
SOURCES = "carbonmapper-sources"
SCENES = "carbonmapper-scenes"

GEOTIFF = "image/tiff; application=geotiff"
# plume asset field → (media type, STAC roles, OGC link relation, title)
PLUME_ASSETS: dict[str, tuple[str, list[str], str, str]] = {
    "plume_png": ("image/png", ["overlay"], "preview", "Plume overlay (PNG)"),
    "plume_rgb_png": ("image/png", ["visual"], "preview", "Plume over RGB (PNG)"),
    "plume_tif": (GEOTIFF, ["data"], "enclosure", "Plume enhancement (GeoTIFF)"),
    "con_tif": (GEOTIFF, ["data"], "enclosure", "Concentration (GeoTIFF)"),
    "rgb_png": ("image/png", ["visual", "thumbnail"], "preview", "RGB image (PNG)"),
}


def scene_name_of(plume_name: str) -> str:
    """`GAO20230628t191011p0000-B` → `GAO20230628t191011p0000` (observed.md: scene id = plume name minus `-X`)."""
    return plume_name.rsplit("-", 1)[0] if "-" in plume_name else plume_name


def _point(geometry: Any) -> dict[str, Any] | None:
    if not isinstance(geometry, dict) or not geometry.get("coordinates"):
        return None
    return {"type": geometry.get("type", "Point"), "coordinates": geometry["coordinates"]}


def _bbox4(value: Any) -> list[float] | None:
    if isinstance(value, list) and len(value) == 4 and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


def _polygon(b: list[float]) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]]}


def _ogc_item(base: str, collection: str, item_id: str) -> str:
    return f"{base}/collections/{collection}/items/{quote(item_id, safe='')}"


def _ogc_items(base: str, collection: str, **params: str) -> str:
    return f"{base}/collections/{collection}/items?{urlencode(params)}"


def _stac_item(base: str, collection: str, item_id: str) -> str:
    return f"{base}/stac/collections/{collection}/items/{quote(item_id, safe='')}"


# ----------------------------------------------------------------- plumes
def plume_properties(record: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in record.items() if k not in ("geometry_json", "id")}
    props["uuid"] = record.get("id")
    props["scene_name"] = scene_name_of(str(record["plume_id"]))
    props.setdefault("source_name", None)
    return props


def plume_feature(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["plume_id"])
    links = [
        {"rel": rel, "href": record[field], "type": media, "title": title}
        for field, (media, _, rel, title) in PLUME_ASSETS.items() if record.get(field)
    ]
    links.append({"rel": "related", "href": _ogc_item(base, SCENES, scene_name_of(name)),
                  "type": "application/geo+json", "title": "Scene this plume was detected in"})
    if record.get("source_name"):
        links.append({"rel": "related", "href": _ogc_item(base, SOURCES, record["source_name"]),
                      "type": "application/geo+json", "title": "Source (cluster of plumes) this plume belongs to"})
    feature: dict[str, Any] = {"type": "Feature", "id": name, "geometry": _point(record.get("geometry_json")),
                               "properties": plume_properties(record), "links": links}
    if bbox := _bbox4(record.get("plume_bounds")):
        feature["bbox"] = bbox
    return feature


def plume_item(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["plume_id"])
    geometry = _point(record.get("geometry_json"))
    coords = geometry["coordinates"] if geometry else [0.0, 0.0]
    props = plume_properties(record)
    for moved in (*PLUME_ASSETS, "scene_timestamp", "platform", "instrument", "gsd", "off_nadir", "published_at",
                  "modified"):
        props.pop(moved, None)
    props.update({"platform": record.get("platform"), "instruments": [record.get("instrument")],
                  "gsd": record.get("gsd")})
    if record.get("published_at"):
        props["published"] = record["published_at"]
    if record.get("modified"):
        props["updated"] = record["modified"]
    item = pystac.Item(
        id=name, geometry=geometry, bbox=_bbox4(record.get("plume_bounds")) or [*coords, *coords],
        datetime=str_to_datetime(record["scene_timestamp"]), properties=props, collection=PLUMES,
    )
    if record.get("off_nadir") is not None:
        ViewExtension.ext(item, add_if_missing=True).off_nadir = float(record["off_nadir"])
    for field, (media, roles, _, title) in PLUME_ASSETS.items():
        if record.get(field):
            item.add_asset(field, pystac.Asset(href=record[field], media_type=media, roles=roles, title=title))
    item.add_link(pystac.Link("related", _stac_item(base, SCENES, scene_name_of(name)),
                              media_type="application/geo+json", title="Scene"))
    if record.get("source_name"):
        item.add_link(pystac.Link("related", _stac_item(base, SOURCES, record["source_name"]),
                                  media_type="application/geo+json", title="Source"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


# ----------------------------------------------------------------- sources
def source_record(feature: dict[str, Any]) -> dict[str, Any]:
    """A `sources.geojson` feature → source record."""
    return {**(feature.get("properties") or {}), "point": _point(feature.get("geometry"))}


def source_record_from_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A `source/{name}` SourceDetail → the same record as its `sources.geojson` feature."""
    props = dict(detail.get("source") or {})
    props.setdefault("source_name", detail.get("source_name"))
    dates = sorted(detail.get("detection_dates") or [])
    if dates:
        props.setdefault("timestamp_min", dates[0])
        props.setdefault("timestamp_max", dates[-1])
    return {**props, "point": _point(detail.get("point"))}


def source_feature(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["source_name"])
    props = {k: v for k, v in record.items() if k != "point"}
    return {"type": "Feature", "id": name, "geometry": record.get("point"), "properties": props, "links": [
        {"rel": "related", "href": _ogc_items(base, PLUMES, source_name=name), "type": "application/geo+json",
         "title": "Plumes of this source"}]}


def source_item(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["source_name"])
    point = record.get("point")
    coords = point["coordinates"] if point else [0.0, 0.0]
    props = {k: v for k, v in record.items() if k not in ("point", "timestamp_min", "timestamp_max")}
    start, end = record.get("timestamp_min"), record.get("timestamp_max")
    # A source spans its detections: start/end datetimes; a record without them dates from its publication.
    span: dict[str, Any] = (
        {"datetime": None, "start_datetime": str_to_datetime(start), "end_datetime": str_to_datetime(end)}
        if start and end else {"datetime": str_to_datetime(record.get("published_at_max") or "1970-01-01T00:00:00Z")}
    )
    item = pystac.Item(id=name, geometry=point, bbox=[*coords, *coords], properties=props, collection=SOURCES,
                       **span)
    item.add_link(pystac.Link("items", _ogc_items(base, PLUMES, source_name=name),
                              media_type="application/geo+json", title="Plumes of this source"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


# ----------------------------------------------------------------- scenes
def scene_properties(record: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in record.items() if k not in ("id", "usersceneassignmentstatus_set")}
    props["uuid"] = record.get("id")
    return props


def scene_feature(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["name"])
    bounds = _bbox4(record.get("bounds"))  # [west, south, east, north]: the doc leaves the order open
    feature: dict[str, Any] = {
        "type": "Feature", "id": name, "geometry": _polygon(bounds) if bounds else None,
        "properties": scene_properties(record),
        "links": [{"rel": "related", "href": _ogc_items(base, PLUMES, scene_name=name),
                   "type": "application/geo+json", "title": "Plumes detected in this scene"}],
    }
    if bounds:
        feature["bbox"] = bounds
    return feature


def scene_item(record: dict[str, Any], base: str) -> dict[str, Any]:
    name = str(record["name"])
    bounds = _bbox4(record.get("bounds"))
    props = scene_properties(record)
    props.pop("timestamp", None)
    props["instruments"] = [props.pop("instrument", None)]
    item = pystac.Item(id=name, geometry=_polygon(bounds) if bounds else None, bbox=bounds,
                       datetime=str_to_datetime(record["timestamp"]), properties=props, collection=SCENES)
    item.add_link(pystac.Link("items", _ogc_items(base, PLUMES, scene_name=name),
                              media_type="application/geo+json", title="Plumes detected in this scene"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)
