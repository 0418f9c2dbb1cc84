"""Local evaluation of a whole query on one face's object (a GeoJSON feature or a STAC item).

Used wherever the upstream did not apply everything (see `geofed.query.pushdown`) and by the STAC bridge for
remote members: ids, bbox / intersects, the datetime interval (overlap with the object's own time or time
range) and the CQL2 filter, evaluated in the vocabulary of the object's face.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import shapely
import shapely.geometry
from shapely.errors import GEOSException

from geofed import cql2
from geofed.query.parse import BBox, geometry_bounds, instant

Matcher = Callable[[dict[str, Any]], bool]
# a STAC item's time: its instant, or its range
ITEM_TIME = ("datetime", "start_datetime", "end_datetime")


def area_of(bbox: BBox | None, intersects: dict[str, Any] | None) -> Any:
    """The query's area as a prepared shapely geometry (bbox AND intersects), or None."""
    area = shapely.geometry.box(*bbox) if bbox else None
    if intersects:
        shape = shapely.geometry.shape(intersects)
        area = shape if area is None else area.intersection(shape)
    if area is not None:
        shapely.prepare(area)
    return area


def _shape(obj: dict[str, Any]) -> Any:
    geometry = obj.get("geometry")
    try:
        if geometry:
            return shapely.geometry.shape(geometry)
        box = obj.get("bbox")
        return shapely.geometry.box(*box[:2], *box[-2:]) if box else None
    except (GEOSException, ValueError, TypeError, KeyError, AttributeError):
        return None


def _bounds(obj: dict[str, Any]) -> tuple[float, float, float, float]:
    nan = float("nan")
    box = obj.get("bbox")
    try:
        if box and len(box) in (4, 6):
            return (float(box[0]), float(box[1]), float(box[-3 if len(box) == 6 else 2]), float(box[-1]))
        return geometry_bounds(obj["geometry"]) if obj.get("geometry") else (nan, nan, nan, nan)
    except (TypeError, ValueError):
        return (nan, nan, nan, nan)


def time_range(props: dict[str, Any], fields: tuple[str, ...]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(first, last) instant of an object: `fields` = (instant,) or (instant, start, end); a range wins."""
    if len(fields) == 3:
        start, end = instant(props.get(fields[1])), instant(props.get(fields[2]))
        if start is not None or end is not None:
            return start or end, end or start
    at = instant(props.get(fields[0])) if fields else None
    return at, at


def matcher(
    *,
    ids: Iterable[str] | None = None,
    bbox: BBox | None = None,
    intersects: dict[str, Any] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    time_fields: tuple[str, ...] = ITEM_TIME,
    node: Any = None,
    temporal: Iterable[str] = (),
    collections: Iterable[str] | None = None,
) -> Matcher:
    """A function telling whether an object satisfies every condition given (None / empty = no condition).
    An object without a time (or geometry) never matches a datetime (or spatial) condition."""
    wanted_ids = set(ids or ())
    wanted_collections = set(collections or ())
    area = area_of(bbox, intersects)
    timed = start is not None or end is not None
    keep_filter = cql2.predicate(node, set(temporal) | {f for f in time_fields})
    # Bounds first: most objects of a scan are told apart by them, without building a shapely geometry.
    aw, as_, ae, an = area.bounds if area is not None else (0.0, 0.0, 0.0, 0.0)
    rectangle = area is not None and intersects is None

    def within_area(obj: dict[str, Any]) -> bool:
        w, s, e, n = _bounds(obj)
        if w <= e:  # (a bbox across the antimeridian, west > east, is left to shapely)
            if not (w <= ae and aw <= e and s <= an and as_ <= n):
                return False
            if rectangle and aw <= w and e <= ae and as_ <= s and n <= an:
                return True
        elif w != w:
            return False  # no usable geometry (NaN bounds)
        shape = _shape(obj)
        return shape is not None and bool(area.intersects(shape))

    def matches(obj: dict[str, Any]) -> bool:
        if wanted_ids and obj.get("id") not in wanted_ids:
            return False
        if wanted_collections and obj.get("collection") not in wanted_collections:
            return False
        if area is not None and not within_area(obj):
            return False
        if timed:
            first, last = time_range(obj.get("properties") or {}, time_fields)
            if first is None or last is None:
                return False
            if (end is not None and first > end) or (start is not None and last < start):
                return False
        return node is None or keep_filter(obj)

    return matches
