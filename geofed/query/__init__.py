"""geofed's one query engine: the query model, parsing, pushdown tables, local evaluation, order and paging.

    from geofed.query import FeatureQuery, RecordPage, PushdownTable, Param, Range, Batch, engine
"""

from geofed.query import engine
from geofed.query.evaluate import ITEM_TIME, matcher
from geofed.query.model import Face, FeatureQuery, FeatureSource, RecordPage, SortBy
from geofed.query.order import SortKey, field_name, sort_objects, sort_value
from geofed.query.paging import Batch, direct_page, scan_page, sorted_page
from geofed.query.parse import (
    BBox,
    check_enum,
    geometry_bounds,
    instant,
    parse_bbox,
    parse_datetime,
    parse_geometry,
    parse_interval,
    parse_number,
    rfc3339,
    typed,
)
from geofed.query.pushdown import Param, Params, Plan, PushdownTable, Range, combined_filter, split
from geofed.query.source import ItemContext, UpstreamSource

__all__ = [
    "ITEM_TIME",
    "BBox",
    "Batch",
    "Face",
    "FeatureQuery",
    "FeatureSource",
    "ItemContext",
    "Param",
    "Params",
    "Plan",
    "PushdownTable",
    "Range",
    "RecordPage",
    "SortBy",
    "SortKey",
    "UpstreamSource",
    "check_enum",
    "combined_filter",
    "direct_page",
    "engine",
    "field_name",
    "geometry_bounds",
    "instant",
    "matcher",
    "parse_bbox",
    "parse_datetime",
    "parse_geometry",
    "parse_interval",
    "parse_number",
    "rfc3339",
    "scan_page",
    "sort_objects",
    "sort_value",
    "sorted_page",
    "split",
    "typed",
]
