"""One mapping from an Epoch plot (an NDJSON GeoJSON feature) to a GeoJSON feature and a STAC item.

A *record* is the upstream feature with `annual_*` parsed into objects (the doc shows them as objects and says
they are JSON strings: both are accepted). Both faces are built from it, so they agree on ids, geometry, times
and properties.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

import orjson
import pystac
import shapely

from geofed import errors

LOGGER = logging.getLogger(__name__)
COLLECTION_ID = "epoch-plots"
ANNUAL_FIELDS = ("annual_agb", "annual_bgb", "annual_soc", "annual_lc")
TEMPORAL_FIELDS = frozenset({"ingestion_date", "monitoring_start", "monitoring_end"})
# The properties of `plots_only=true` features (mode C of the doc): no statistics, no monitoring window.
PLOTS_ONLY_FIELDS = frozenset({"uuid", "plotid", "ingestion_date", "area", "metadata"})

_STAT = {"type": "number"}
_ANNUAL = {"type": "object", "description": "{'mean': n, 'std': n, 'YYYY': n, ...} in tCO2e/ha"}
# Every documented per-plot property with its type (the queryables of `epoch-plots`).
PROPERTIES: dict[str, dict[str, Any]] = {
    "uuid": {"type": "string", "format": "uuid", "title": "unique id of the plot"},
    "plotid": {"type": "string", "title": "plot id from the original collection"},
    "collection_id": {"type": "string", "title": "Epoch collection identifier"},
    "facility_id": {"type": "string", "title": "facility associated with the plot"},
    "ingestion_date": {"type": "string", "format": "date-time"},
    "monitoring_start": {"type": "string", "format": "date-time"},
    "monitoring_end": {"type": "string", "format": "date-time"},
    "area": {"type": "number", "title": "plot area, ha"},
    **{f"{name}_{suffix}": dict(_STAT) for name in ("luc", "biogenic", "soc", "removal")
       for suffix in ("tco2eyear", "tco2ehayear")},
    **{f"{name}_uncertainty_sd": dict(_STAT) for name in ("luc", "biogenic", "removal")},
    "annual_agb": dict(_ANNUAL), "annual_bgb": dict(_ANNUAL), "annual_soc": dict(_ANNUAL),
    "annual_lc": {"type": "object", "description": "{'YYYY': land-cover class (integer)}"},
    "thumbnail_url": {"type": "string", "format": "uri"},
    "thumbnail_url_lc": {"type": "string", "format": "uri"},
    "metadata": {"type": "object", "description": "free-form upload attributes, different per collection"},
}
STRING_FIELDS = frozenset(k for k, v in PROPERTIES.items() if v["type"] == "string" and k not in TEMPORAL_FIELDS)
NUMBER_FIELDS = frozenset(k for k, v in PROPERTIES.items() if v["type"] == "number")


def parse_line(line: bytes) -> dict[str, Any]:
    """An NDJSON line → record (annual_* as objects). A line that is not a feature is the upstream's fault."""
    try:
        feature = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise errors.UpstreamError("Epoch sent a line that is not JSON", upstream="epoch") from None
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        raise errors.UpstreamError("Epoch sent a line that is not a GeoJSON feature", upstream="epoch")
    props = feature["properties"]
    for name in ANNUAL_FIELDS:
        value = props.get(name)
        if isinstance(value, str | bytes):
            try:
                props[name] = orjson.loads(value)
            except orjson.JSONDecodeError:
                LOGGER.warning("Epoch plot %s: %s is not JSON; dropped", props.get("uuid"), name)
                props[name] = None
    return feature


def parse_time(value: Any) -> dt.datetime | None:
    """An upstream timestamp or date (ISO 8601) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def rfc3339(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def window(record: dict[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    props = record["properties"]
    return parse_time(props.get("monitoring_start")), parse_time(props.get("monitoring_end"))


def to_feature(record: dict[str, Any]) -> dict[str, Any]:
    props = record["properties"]
    return {"type": "Feature", "id": props.get("uuid"), "geometry": record.get("geometry"), "properties": props}


def to_item(record: dict[str, Any], collection_id: str = COLLECTION_ID) -> dict[str, Any]:
    """A STAC 1.1 item: the monitoring window as start/end_datetime, `created` = ingestion, thumbnails as assets."""
    props = dict(record["properties"])
    geometry = record.get("geometry")
    bbox = list(shapely.bounds(shapely.from_geojson(orjson.dumps(geometry))).tolist()) if geometry else None
    start, end = window(record)
    created = parse_time(props.get("ingestion_date"))
    extra = {k: v for k, v in props.items() if k not in ("thumbnail_url", "thumbnail_url_lc")}
    if start and end:
        item = pystac.Item(str(props["uuid"]), geometry, bbox, None, extra, start_datetime=start, end_datetime=end,
                           collection=collection_id)
    else:  # plots_only records carry no monitoring window: the ingestion time is all we know
        item = pystac.Item(str(props["uuid"]), geometry, bbox, created or dt.datetime.now(dt.UTC), extra,
                           collection=collection_id)
    for name in TEMPORAL_FIELDS:  # RFC 3339 with Z, like the STAC datetimes
        if name in item.properties:
            item.properties[name] = rfc3339(parse_time(item.properties[name])) or item.properties[name]
    if created:
        item.common_metadata.created = created
    for key, field, title in (("thumbnail", "thumbnail_url", "Biomass and emissions"),
                              ("thumbnail_lc", "thumbnail_url_lc", "Land cover")):
        if props.get(field):
            item.add_asset(key, pystac.Asset(props[field], title=title, media_type=pystac.MediaType.PNG,
                                             roles=["thumbnail", "overview"]))
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    out["links"] = []
    return out


def aggregate_feature(record: dict[str, Any] | None, collection: str, start: str | None, end: str | None,
                      filters: dict[str, Any]) -> dict[str, Any]:
    """The aggregate answer as a GeoJSON feature; Epoch gives it no id, so one is made from the query."""
    digest = hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]
    ident = f"epoch-aggregate:{collection}:{start or '..'}/{end or '..'}" + (f":{digest}" if filters else "")
    if record is None:  # no plot matched: an empty aggregate rather than an error
        props: dict[str, Any] = {"collection_id": collection, "aggregate_plot_count": 0, "aggregate_area": 0.0,
                                 "monitoring_start": start, "monitoring_end": end, "metadata": {}}
        return {"type": "Feature", "id": ident, "geometry": None, "properties": props}
    return {"type": "Feature", "id": ident, "geometry": record.get("geometry"), "properties": record["properties"]}
