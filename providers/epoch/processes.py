"""`epoch-aggregate-emissions` (sync): Epoch's `aggregate=true` mode as an OGC API process.

Epoch aggregates every matching plot into one feature: sums of the per-year figures and uncertainties,
area-weighted averages of the per-hectare figures and annual series, the total area and the plot count. With
`aggregate=true` and no `limit` the doc says Epoch "returns the first matching case" — which may mean it
aggregates only the first plot — so geofed always sends an explicit `limit` (`GEOFED_EPOCH_AGGREGATE_LIMIT`,
`options.EpochOptions.aggregate_limit`), and a count that reaches it is refused rather than returned as if it
covered everything. Plots whose statistics Epoch has not computed yet (only listed with `plots_only=true`) have
nothing to aggregate: the aggregate covers the plots with statistics, as the plot pages do.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import aclosing
from typing import Any

from geofed import errors
from geofed.ogc.process import UpstreamProcessor
from providers.epoch import records
from providers.epoch.client import REAL_URL, EpochClient, flag
from providers.epoch.options import get_options

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Upstream parameters that are not columns: a filter may not override them.
RESERVED = frozenset({"filename", "monitoring_start", "monitoring_end", "limit", "aggregate", "plots_only"})

PROCESS_METADATA: dict[str, Any] = {
    "version": "1.0.0",
    "id": "epoch-aggregate-emissions",
    "title": {"en": "Epoch: aggregate biomass and land-use-change emissions"},
    "description": {"en": (
        "Aggregates every Epoch plot of a collection that matches the monitoring window and the filters into one "
        "GeoJSON feature: totals (tCO2e/yr) and summed uncertainties, area-weighted averages per hectare and of "
        "the yearly AGB/BGB/SOC series, the total area (aggregate_area, ha) and the number of plots "
        "(aggregate_plot_count). It covers the plots whose statistics Epoch has computed (those listed by "
        "/collections/epoch-plots/items; a plot not computed yet has none), up to the deployment's "
        "GEOFED_EPOCH_AGGREGATE_LIMIT plots (default 1 000 000): a larger match is refused (400), never "
        "aggregated in part. The geometry covers the matched plots (Epoch's choice of envelope). Runs "
        "synchronously: the answer is the feature. Valid collection ids and filter values are those the "
        "features of /collections/epoch-plots/items carry (collection_id, facility_id, plotid)."
    )},
    "jobControlOptions": ["sync-execute"],
    "outputTransmission": ["value"],
    "keywords": ["Epoch", "biomass", "emissions", "land use change", "aggregate"],
    "links": [{"type": "text/html", "rel": "about", "title": "Epoch SCo2 API: fetch biomass emissions",
               "href": REAL_URL, "hreflang": "en-US"}],
    "inputs": {
        "collection": {
            "title": "Collection",
            "description": "Epoch collection identifier (the upstream's `filename`): the `collection_id` of the "
                           "features of /collections/epoch-plots/items, e.g. cocoa-civ-2024 on the demo",
            "schema": {"type": "string", "minLength": 1},
            "minOccurs": 1, "maxOccurs": 1,
        },
        "monitoring_start": {
            "title": "Monitoring start",
            "description": "first day of the monitoring window (YYYY-MM-DD)",
            "schema": {"type": "string", "format": "date", "pattern": DATE.pattern},
            "minOccurs": 0, "maxOccurs": 1,
        },
        "monitoring_end": {
            "title": "Monitoring end",
            "description": "last day of the monitoring window (YYYY-MM-DD)",
            "schema": {"type": "string", "format": "date", "pattern": DATE.pattern},
            "minOccurs": 0, "maxOccurs": 1,
        },
        "filters": {
            "title": "Filters",
            "description": "column → value equalities on Epoch's batch table, all of which must hold: the "
                           "columns its doc names are plotid, collection_id and facility_id (Epoch may refuse "
                           "another name: 400); the values are those of the properties of "
                           "/collections/epoch-plots/items",
            "schema": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "minOccurs": 0, "maxOccurs": 1,
        },
    },
    "outputs": {
        "aggregate": {
            "title": "Aggregate feature",
            "description": "one GeoJSON feature with the aggregated statistics (sums, area-weighted averages, "
                           "aggregate_area in ha, aggregate_plot_count); when no plot matches, a null geometry "
                           "and aggregate_plot_count 0",
            "schema": {"type": "object", "contentMediaType": "application/geo+json"},
        }
    },
    "example": {
        "inputs": {
            "collection": "cocoa-civ-2024",
            "monitoring_start": "2020-01-01",
            "monitoring_end": "2024-01-10",
            "filters": {"facility_id": "coop-soubre-01"},
        }
    },
}


def _date(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not DATE.match(value):
        raise errors.InvalidParameter(f"'{name}' must be a date as YYYY-MM-DD, got {value!r}", parameter=name)
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise errors.InvalidParameter(f"'{name}' is not a calendar date: {value!r}", parameter=name) from None
    return value


def _filters(data: dict[str, Any]) -> dict[str, str]:
    value = data.get("filters") or {}
    if not isinstance(value, dict):
        raise errors.InvalidParameter("'filters' must be an object of column → value", parameter="filters")
    out: dict[str, str] = {}
    for column, item in value.items():
        where = f"filters.{column}"
        if not isinstance(column, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", column):
            raise errors.InvalidParameter(f"'{where}' is not a column name", parameter="filters")
        if column in RESERVED:
            raise errors.InvalidParameter(f"'{where}': {column} is an input of its own, not a filter",
                                          parameter=where)
        if isinstance(item, bool):
            out[column] = flag(item)
        elif isinstance(item, str | int | float):
            out[column] = str(item)
        else:
            raise errors.InvalidParameter(f"'{where}' must be a string, number or boolean", parameter=where)
    return out


class AggregateEmissionsProcessor(UpstreamProcessor):
    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, PROCESS_METADATA)

    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:
        collection = data.get("collection")
        if not isinstance(collection, str) or not collection.strip():
            raise errors.InvalidParameter("'collection' is required: an Epoch collection identifier",
                                          parameter="collection")
        start, end = _date(data, "monitoring_start"), _date(data, "monitoring_end")
        if start and end and start > end:
            raise errors.InvalidParameter("'monitoring_start' is after 'monitoring_end'", parameter="monitoring_start")
        filters = _filters(data)
        limit = get_options().aggregate_limit  # explicit: the doc's aggregate default is 1 plot
        params = {**filters, "filename": collection, "aggregate": flag(True), "limit": str(limit)}
        params.update({k: v for k, v in (("monitoring_start", start), ("monitoring_end", end)) if v})
        found: list[dict[str, Any]] = []
        try:
            async with aclosing(EpochClient().lines(params)) as lines:
                async for line in lines:
                    found.append(records.parse_line(line))
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"Epoch has no collection '{collection}'", parameter="collection") from None
        if len(found) > 1:
            raise errors.UpstreamError(f"Epoch answered aggregate=true with {len(found)} features instead of one",
                                       upstream="epoch")
        record = found[0] if found else None
        if record is not None and int(record["properties"].get("aggregate_plot_count") or 0) >= limit:
            raise errors.InvalidParameter(
                f"more than {limit - 1} plots match: the aggregate would be partial (at most "
                f"GEOFED_EPOCH_AGGREGATE_LIMIT={limit}); narrow the filters",
                parameter="filters")
        return "application/geo+json", records.aggregate_feature(record, collection, start, end, filters)
