"""The one mapping from CarbonMapper records to GeoJSON features (OGC face) and STAC items (STAC face).

Records are the upstream's JSON objects, with two things geofed adds before mapping:
- plumes: `source_name` (joined from `sources.geojson`: the API has no plume → source key) when known;
- sources: the `sources.geojson` feature and the `source/{name}` detail are normalised to one record,
  `{"point": GeoJSON Point, **source properties}`.
The upstream's UUID `id` becomes the property `uuid`: `id` is the feature id (the plume or scene name), and a
property of the same name would shadow it in CQL2 and in GDAL.

Both faces carry the same properties under the same names, except where STAC has its own name for a field
(`STAC_NAMES`, per collection): the item then carries it under the STAC name only. Values the upstream does not
give are absent (STAC common metadata) or null, never made up: no geometry → no bbox; a source without
`timestamp_min`/`timestamp_max` (older deployments, observed.md) gets `datetime: null` and no range — an item a
STAC validator rejects, knowingly, rather than a date that is not the source's.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from geofed.query import ItemContext, instant, rfc3339

GASES = ("CH4", "CO2")
SECTORS = ("1B2", "6A", "6B", "4B", "1B1a", "1A1", "other", "NULL", "NA")
INSTRUMENTS = ("GAO", "ang", "av3", "emi", "tan", "ssc")
QUALITIES = ("good", "questionable", "bad")

# {platform}{YYYYMMDD}t{HHMMSS}p{part} (doc: scene names); a plume name adds `-<letters>`
SCENE_NAME = re.compile(r"^[A-Za-z0-9]{3}(\d{8})t(\d{6})p\d+")
PLUMES = "carbonmapper-plumes"
SOURCES = "carbonmapper-sources"
SCENES = "carbonmapper-scenes"

STAC_VERSION = "1.1.0"
VIEW = "https://stac-extensions.github.io/view/v1.0.0/schema.json"
# feature property → STAC item property, per collection (one upstream, three collections: `datetime` is a
# different feature property in each, so one flat map could not be read backwards)
STAC_NAMES: dict[str, dict[str, str]] = {
    PLUMES: {
        "scene_timestamp": "datetime",
        "off_nadir": "view:off_nadir",
        "published_at": "published",
        "modified": "updated",
        # a STAC item's `collection` is the geofed collection; the upstream's product id moves aside
        "collection": "carbonmapper:collection",
    },
    SOURCES: {"timestamp_min": "start_datetime", "timestamp_max": "end_datetime"},
    SCENES: {"timestamp": "datetime"},
}
# STAC common metadata: a string / positive number when present, so absent (not null) when unknown
COMMON = ("platform", "gsd")
TIMES = ("datetime", "start_datetime", "end_datetime", "published", "updated")

GEOTIFF = "image/tiff; application=geotiff"
# plume asset field → (media type, STAC roles, OGC link relation, title)
PLUME_ASSETS: dict[str, tuple[str, list[str], str, str]] = {
    # STAC Browser previews the `thumbnail` / `overview` asset
    "plume_png": ("image/png", ["thumbnail", "overview", "overlay"], "preview", "Plume overlay (PNG)"),
    "plume_rgb_png": ("image/png", ["visual"], "preview", "Plume over RGB (PNG)"),
    "plume_tif": (GEOTIFF, ["data"], "enclosure", "Plume enhancement (GeoTIFF)"),
    "con_tif": (GEOTIFF, ["data"], "enclosure", "Concentration (GeoTIFF)"),
    "rgb_png": ("image/png", ["visual"], "preview", "RGB image (PNG)"),
}
GEOJSON = "application/geo+json"
# What STAC Browser (stac-js `isPreview`) shows as an item's picture: an asset with one of these roles
PREVIEW_ROLES = ("thumbnail", "overview")
BROWSER_IMAGES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def with_preview_roles(assets: dict[str, Any]) -> dict[str, Any]:
    """The upstream STAC API's assets, roles kept; when none of them is a preview, each image a browser can show
    that the upstream marks `visual` or `overlay` (the scene's RGB, the plume PNG) also gets the role `overview`,
    so clients show it where they show pictures (as `plume_png` on geofed's own plume items)."""
    def image(asset: Any) -> bool:
        return isinstance(asset, dict) and str(asset.get("type", "")).split(";")[0].strip() in BROWSER_IMAGES

    if any(set(a.get("roles") or ()) & set(PREVIEW_ROLES) for a in assets.values() if isinstance(a, dict)):
        return assets
    return {key: {**a, "roles": [*a["roles"], "overview"]}
            if image(a) and set(a.get("roles") or ()) & {"visual", "overlay"} else a
            for key, a in assets.items()}


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


def _point_bbox(point: dict[str, Any] | None) -> list[float] | None:
    if not point or point.get("type") != "Point":
        return None
    x, y = point["coordinates"][:2]
    return [float(x), float(y), float(x), float(y)]


def _polygon(b: list[float]) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]]}


def _ogc_item(base: str, collection: str, item_id: str) -> str:
    return f"{base}/collections/{collection}/items/{quote(item_id, safe='')}"


def _ogc_items(base: str, collection: str, **params: str) -> str:
    return f"{base}/collections/{collection}/items?{urlencode(params)}"


def _stac_item_url(base: str, collection: str, item_id: str) -> str:
    return f"{base}/stac/collections/{collection}/items/{quote(item_id, safe='')}"


def _stamp(value: Any) -> str | None:
    """An upstream date-time as RFC 3339 UTC (what STAC requires), None when absent."""
    moment = instant(value)
    return rfc3339(moment, fraction=bool(moment.microsecond)) if moment else None


def _item(item_id: str, collection_id: str, geometry: dict[str, Any] | None, bbox: list[float] | None,
          props: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A STAC item from feature properties: renamed through `names`, times normalised, unknown common
    metadata left out, `datetime` null when the item has a range or no time."""
    props = dict(props)
    for feature_name, stac_name in names.items():
        if feature_name in props:
            value = props.pop(feature_name)
            if stac_name:
                props[stac_name] = value
    for name in TIMES:
        if name in props:
            props[name] = _stamp(props[name])
    for name in COMMON:
        if props.get(name) is None:
            props.pop(name, None)
    props.setdefault("datetime", None)
    item: dict[str, Any] = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [],
                            "id": item_id, "geometry": geometry}
    if geometry is not None and bbox is not None:
        item["bbox"] = bbox
    item.update({"properties": props, "links": [], "assets": {}, "collection": collection_id})
    return item


def _link(rel: str, href: str, title: str) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": GEOJSON, "title": title}


# ----------------------------------------------------------------- plumes
def plume_properties(record: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in record.items() if k not in ("geometry_json", "id")}
    props["uuid"] = record.get("id")
    props["scene_name"] = scene_name_of(str(record["plume_id"]))
    props.setdefault("source_name", None)
    return props


def plume_feature(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["plume_id"])
    links = [
        {"rel": rel, "href": record[field], "type": media, "title": title}
        for field, (media, _, rel, title) in PLUME_ASSETS.items() if record.get(field)
    ]
    links.append(_link("related", _ogc_item(ctx.public_url, SCENES, scene_name_of(name)),
                       "Scene this plume was detected in"))
    if record.get("source_name"):
        links.append(_link("related", _ogc_item(ctx.public_url, SOURCES, record["source_name"]),
                           "Source (cluster of plumes) this plume belongs to"))
    geometry = _point(record.get("geometry_json"))
    feature: dict[str, Any] = {"type": "Feature", "id": name, "geometry": geometry,
                               "properties": plume_properties(record), "links": links}
    if geometry and (bbox := _bbox4(record.get("plume_bounds"))):
        feature["bbox"] = bbox
    return feature


def plume_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["plume_id"])
    geometry = _point(record.get("geometry_json"))
    props = {k: v for k, v in plume_properties(record).items() if k not in PLUME_ASSETS}
    if record.get("instrument"):
        props["instruments"] = [record["instrument"]]  # and `instrument` stays: it is a queryable
    item = _item(name, ctx.collection_id, geometry, _bbox4(record.get("plume_bounds")) or _point_bbox(geometry),
                 props, STAC_NAMES[PLUMES])
    if "view:off_nadir" in item["properties"]:
        item["stac_extensions"].append(VIEW)
    item["assets"] = {field: {"href": record[field], "type": media, "roles": roles, "title": title}
                      for field, (media, roles, _, title) in PLUME_ASSETS.items() if record.get(field)}
    item["links"].append(_link("related", _stac_item_url(ctx.public_url, SCENES, scene_name_of(name)), "Scene"))
    if record.get("source_name"):
        item["links"].append(_link("related", _stac_item_url(ctx.public_url, SOURCES, record["source_name"]),
                                   "Source"))
    return item


# ----------------------------------------------------------------- sources
def source_record(feature: dict[str, Any], times_from_plumes: bool = True) -> dict[str, Any]:
    """A `sources.geojson` feature → source record. Its properties are not in the doc; older deployments leave
    out `timestamp_min/max` (observed.md), and a datetime filter would then drop every source. With
    `times_from_plumes` the span is taken from the source's `plume_ids` instead: a plume name starts with its
    scene's name, `{platform}{YYYYMMDD}t{HHMMSS}p{part}`, whose date and time the doc defines as the acquisition
    time in UTC — the very times newer deployments aggregate. A source with neither keeps no span (a datetime
    filter cannot show it matches)."""
    props = dict(feature.get("properties") or {})
    if times_from_plumes and (props.get("timestamp_min") is None or props.get("timestamp_max") is None):
        times = sorted(t for t in (scene_time(str(p)) for p in props.get("plume_ids") or []) if t)
        if times:
            props["timestamp_min"] = props.get("timestamp_min") or times[0]
            props["timestamp_max"] = props.get("timestamp_max") or times[-1]
    return {**props, "point": _point(feature.get("geometry"))}


def scene_time(plume_or_scene_name: str) -> str | None:
    """The acquisition time a scene (or plume) name encodes, RFC 3339; None when the name does not follow the
    documented format."""
    match = SCENE_NAME.match(plume_or_scene_name)
    if not match:
        return None
    day, time = match.group(1), match.group(2)
    return f"{day[:4]}-{day[4:6]}-{day[6:]}T{time[:2]}:{time[2:4]}:{time[4:]}Z"


def source_record_from_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A `source/{name}` SourceDetail → the same record as its `sources.geojson` feature."""
    props = dict(detail.get("source") or {})
    props.setdefault("source_name", detail.get("source_name"))
    dates = sorted(detail.get("detection_dates") or [])
    if dates:
        props.setdefault("timestamp_min", dates[0])
        props.setdefault("timestamp_max", dates[-1])
    return {**props, "point": _point(detail.get("point"))}


def _source_plumes(ctx: ItemContext, name: str) -> dict[str, Any]:
    return _link("related", _ogc_items(ctx.public_url, PLUMES, source_name=name), "Plumes of this source")


def source_feature(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["source_name"])
    props = {k: v for k, v in record.items() if k != "point"}
    return {"type": "Feature", "id": name, "geometry": record.get("point"), "properties": props,
            "links": [_source_plumes(ctx, name)]}


def source_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["source_name"])
    point = record.get("point")
    props = {k: v for k, v in record.items() if k != "point"}
    item = _item(name, ctx.collection_id, point, _point_bbox(point), props, STAC_NAMES[SOURCES])
    item["links"].append({**_source_plumes(ctx, name), "rel": "items"})
    return item


# ----------------------------------------------------------------- scenes
def scene_record_from_plumes(name: str, plumes: list[dict[str, Any]]) -> dict[str, Any]:
    """A scene that scenes/annotated does not list (not eligible for null detection, or not published yet), as
    its plume records describe it: name, uuid, instrument, acquisition time, mission phase. Nothing else is
    known (no footprint: geometry null; no counts)."""
    first = plumes[0]
    record = {"name": name, "id": first.get("scene_id"), "instrument": first.get("instrument"),
              "timestamp": first.get("scene_timestamp"), "mission_phase": first.get("mission_phase")}
    return {key: value for key, value in record.items() if value is not None}


def scene_properties(record: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in record.items() if k not in ("id", "usersceneassignmentstatus_set")}
    props["uuid"] = record.get("id")
    return props


def _scene_plumes(ctx: ItemContext, name: str) -> dict[str, Any]:
    return _link("related", _ogc_items(ctx.public_url, PLUMES, scene_name=name), "Plumes detected in this scene")


def scene_feature(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["name"])
    bounds = _bbox4(record.get("bounds"))  # [west, south, east, north]: the doc leaves the order open
    feature: dict[str, Any] = {"type": "Feature", "id": name, "geometry": _polygon(bounds) if bounds else None,
                               "properties": scene_properties(record), "links": [_scene_plumes(ctx, name)]}
    if bounds:
        feature["bbox"] = bounds
    return feature


def scene_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    name = str(record["name"])
    bounds = _bbox4(record.get("bounds"))
    props = scene_properties(record)
    if record.get("instrument"):
        props["instruments"] = [record["instrument"]]
    item = _item(name, ctx.collection_id, _polygon(bounds) if bounds else None, bounds, props, STAC_NAMES[SCENES])
    item["links"].append({**_scene_plumes(ctx, name), "rel": "items"})
    return item
