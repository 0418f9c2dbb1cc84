"""The one mapping of an Epoch plot (an NDJSON GeoJSON feature) to a GeoJSON feature and to a STAC item.

A *record* is the upstream feature with `annual_*` parsed into objects (the doc shows them as objects and says
they are JSON strings: both are accepted). Both faces are built from it, so they agree on ids, geometry, times
and properties. Items keep the feature's property names (the monitoring window and the ingestion date as
RFC 3339 with `Z`), and add the STAC common names: `start_datetime`/`end_datetime` = the monitoring window
(`datetime` null), `created` = `ingestion_date`. The thumbnails are assets on items, not properties
(`STAC_NAMES`).

Time of a plot without a (whole) monitoring window — `plots_only` records, or a plot whose statistics Epoch has
not computed yet: the one time Epoch gives for it is `ingestion_date`; its item has that as `datetime`, and its
feature is matched by `datetime` on it too (`TIME_FIELDS`). With no ingestion date either, the item's
`datetime` is null and it has no range (nothing is made up; such an item matches no `datetime` query).

Ids: `{plotid}~{uuid}` (`plot_id`). A feature is fetched by id through Epoch's filters, and the doc's filter
columns are those of its batch table (`plotid`, `collection_id`, `facility_id`, …) — `uuid` is not one of them.
So the id carries the plot's `plotid` (the lookup, a documented column) and its `uuid` (which of the answers it is:
the doc calls `uuid` the unique identifier, `plotid` only the id "from the original collection"). A plot without
a `plotid` keeps its bare `uuid`, as every id did before (`split_id` tells them apart).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from geofed import errors
from geofed.query import ItemContext, geometry_bounds, instant, rfc3339

LOGGER = logging.getLogger(__name__)
ANNUAL_FIELDS = ("annual_agb", "annual_bgb", "annual_soc", "annual_lc")
# A feature's time: (instant, range start, range end); the range wins when Epoch gives it (see the docstring).
TIME_FIELDS = ("ingestion_date", "monitoring_start", "monitoring_end")
# The properties of `plots_only=true` features (mode C of the doc): no statistics, no monitoring window.
PLOTS_ONLY_FIELDS = frozenset({"uuid", "plotid", "ingestion_date", "area", "metadata"})
# (asset key, feature property, title) of the two visualisations Epoch links to
THUMBNAILS = (("thumbnail", "thumbnail_url", "Biomass and emissions"),
              ("thumbnail_lc", "thumbnail_url_lc", "Land cover"))
# Feature property → item property where the faces differ ("": not an item property; the thumbnails are assets).
STAC_NAMES: dict[str, str] = {field: "" for _, field, _ in THUMBNAILS}

_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_STAT = {"type": "number"}
# The queryables of `epoch-plots` on the OGC face: every documented per-plot property that a filter can compare
# with one value. `annual_*` ({'mean', 'std', 'YYYY': ...}) and `metadata` (free-form) are objects: features
# carry them, but they are not queryable.
QUERYABLES: dict[str, dict[str, Any]] = {
    "uuid": {**_TEXT, "format": "uuid", "title": "unique id of the plot"},
    "plotid": {**_TEXT, "title": "plot id from the original collection"},
    "collection_id": {**_TEXT, "title": "Epoch collection identifier"},
    "facility_id": {**_TEXT, "title": "facility associated with the plot"},
    "ingestion_date": dict(_TIME),
    "monitoring_start": dict(_TIME),
    "monitoring_end": dict(_TIME),
    "area": {**_STAT, "title": "plot area, ha"},
    **{f"{name}_{suffix}": dict(_STAT) for name in ("luc", "biogenic", "soc", "removal")
       for suffix in ("tco2eyear", "tco2ehayear")},
    **{f"{name}_uncertainty_sd": dict(_STAT) for name in ("luc", "biogenic", "removal")},
    "thumbnail_url": {**_TEXT, "format": "uri"},
    "thumbnail_url_lc": {**_TEXT, "format": "uri"},
}
# Text columns (Epoch filters on any column of its batch table by equality): pushed down.
TEXT_FIELDS = tuple(k for k, v in QUERYABLES.items() if v["type"] == "string" and v.get("format") != "date-time")
# The item's own STAC properties (besides `datetime`), queryable on the STAC face.
STAC_QUERYABLES: dict[str, dict[str, Any]] = {"start_datetime": dict(_TIME), "end_datetime": dict(_TIME),
                                             "created": dict(_TIME)}


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


ID_SEPARATOR = "~"  # unreserved in URLs; never in a UUID (the id is split at its last one)
# The batch-table columns the doc names ("Dynamic Filtering"): pushed down; other equalities are checked here.
FILTER_COLUMNS = ("plotid", "collection_id", "facility_id")


def plot_id(props: dict[str, Any]) -> str | None:
    uuid, plotid = props.get("uuid"), props.get("plotid")
    if uuid is None:
        return None
    return f"{plotid}{ID_SEPARATOR}{uuid}" if plotid not in (None, "") else str(uuid)


def split_id(identifier: str) -> tuple[str | None, str]:
    """(plotid, uuid) of an id; (None, uuid) for a bare uuid."""
    plotid, separator, uuid = identifier.rpartition(ID_SEPARATOR)
    return (plotid, uuid) if separator and plotid else (None, identifier)


def to_feature(record: dict[str, Any]) -> dict[str, Any]:
    props = record["properties"]
    return {"type": "Feature", "id": plot_id(props), "geometry": record.get("geometry"), "properties": props}


def to_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    """A STAC 1.1 item (see the module's docstring for its time); the thumbnails as assets."""
    source = record["properties"]
    geometry = record.get("geometry")
    start, end = instant(source.get("monitoring_start")), instant(source.get("monitoring_end"))
    created = instant(source.get("ingestion_date"))
    props: dict[str, Any] = {"datetime": None if start and end else rfc3339(created)}
    if start and end:
        props["start_datetime"], props["end_datetime"] = rfc3339(start), rfc3339(end)
    if created:
        props["created"] = rfc3339(created)
    for name, value in source.items():
        if not STAC_NAMES.get(name, name):
            continue
        moment = instant(value) if name in TIME_FIELDS else None
        props[STAC_NAMES.get(name, name)] = rfc3339(moment) if moment else value
    assets = {key: {"href": source[field], "title": title, "type": "image/png", "roles": ["thumbnail", "overview"]}
              for key, field, title in THUMBNAILS if source.get(field)}
    item: dict[str, Any] = {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [],
                            "id": str(plot_id(source)), "geometry": geometry}
    if geometry:
        item["bbox"] = list(geometry_bounds(geometry))
    item.update({"properties": props, "links": [], "assets": assets, "collection": ctx.collection_id})
    return item


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
