"""The query model both faces hand to an upstream's feature source, and exact paging over local filters.

A `FeatureSource` (one per geofed collection, in `providers/<upstream>/source.py` or similar) answers
`FeatureQuery`s with `RecordPage`s of upstream records, and maps a record to a GeoJSON feature and a STAC item
through the upstream's `records.py`. The OGC provider (`geofed.ogc.provider`) and the STAC bridge both use it,
so the two faces never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from geofed.errors import InvalidParameter

BBox = tuple[float, float, float, float]


@dataclass
class FeatureQuery:
    offset: int = 0
    limit: int = 10
    bbox: BBox | None = None
    intersects: dict[str, Any] | None = None  # GeoJSON geometry (STAC `intersects`)
    start: dt.datetime | None = None  # datetime interval, both ends inclusive; None = open
    end: dt.datetime | None = None
    equals: dict[str, Any] = field(default_factory=dict)  # property=value from the query string
    filter: Any | None = None  # pygeofilter AST (CQL2)
    sortby: list[tuple[str, Literal["asc", "desc"]]] = field(default_factory=list)
    ids: list[str] | None = None
    hits_only: bool = False
    properties_wanted: list[str] | None = None  # None = all
    skip_geometry: bool = False

    @property
    def has_time(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass
class RecordPage:
    records: list[dict[str, Any]]
    matched: int | None = None  # None = unknown (counting would cost upstream calls)
    more: bool = False  # True when more matches exist after this page


class FeatureSource(Protocol):
    """One collection of one upstream, as both faces see it.

    Optional hook (not part of the protocol check; callers use `sortable_fields(source)`):
    - `sortable() -> set[str]`: the STAC item fields (as `sortby` names them, e.g. `datetime`) that `query`
      orders by *upstream* when `FeatureQuery.sortby` is that one field, ascending or descending; ties may come
      in any order. The STAC bridge then merges the collection lazily instead of reading all its matches to
      sort them. List a field only when the upstream's order equals the order of that field of the items
      `to_item` makes (e.g. CarbonMapper plumes: upstream `sort=desc` is by `scene_timestamp`, the item's
      `datetime`).
    """

    collection_id: str
    title: str
    description: str
    upstream: str  # upstream name (carbonmapper, ...)

    def fields(self) -> dict[str, dict[str, Any]]:
        """Queryable properties: name → JSON schema ({"type": ..., "enum": [...], "format": ...})."""
        ...

    async def query(self, q: FeatureQuery) -> RecordPage: ...

    async def get(self, identifier: str) -> dict[str, Any]:
        """One upstream record; raises geofed.errors.NotFound."""
        ...

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]: ...

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]: ...


# ----------------------------------------------------------------- parsing helpers
def parse_datetime(value: str, parameter: str = "datetime") -> dt.datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = dt.datetime.fromisoformat(text)
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"'{parameter}' must be an RFC 3339 date-time or interval, got {value!r}", parameter=parameter
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_interval(value: str | None, parameter: str = "datetime") -> tuple[dt.datetime | None, dt.datetime | None]:
    """RFC 3339 instant or interval (`a/b`, `../b`, `a/..`) → (start, end). A date-only end covers its day."""
    if not value:
        return None, None
    if "/" not in value:
        start = parse_datetime(value, parameter)
        if len(value.strip()) == 10:
            return start, start + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        return start, start
    left, _, right = value.partition("/")
    start = None if left in ("", "..") else parse_datetime(left, parameter)
    end = None if right in ("", "..") else parse_datetime(right, parameter)
    if end is not None and len(right.strip()) == 10:
        end = end + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    if start is not None and end is not None and start > end:
        raise InvalidParameter(f"'{parameter}' interval starts after it ends", parameter=parameter)
    return start, end


def parse_bbox(value: Any, parameter: str = "bbox") -> BBox | None:
    """4 or 6 numbers (list or comma-separated); 6 drops the heights. min > max → 400 (except antimeridian x)."""
    if value is None or value == [] or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        nums = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise InvalidParameter(f"'{parameter}' must be 4 or 6 numbers", parameter=parameter) from None
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4:
        raise InvalidParameter(f"'{parameter}' must be 4 or 6 numbers, got {len(nums)}", parameter=parameter)
    w, s, e, n = nums
    if s > n:
        raise InvalidParameter(f"'{parameter}' has its southern edge ({s}) north of its northern ({n})",
                               parameter=parameter)
    if w > e:
        raise InvalidParameter(f"'{parameter}' has its western edge ({w}) east of its eastern ({e})",
                               parameter=parameter)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise InvalidParameter(f"'{parameter}' is outside WGS84 bounds", parameter=parameter)
    return (w, s, e, n)


def parse_number(value: Any, parameter: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"'{parameter}' must be a number, got {value!r}", parameter=parameter) from None


def check_enum(value: Any, allowed: list[str] | tuple[str, ...], parameter: str) -> str:
    if value not in allowed:
        raise InvalidParameter(
            f"'{parameter}' must be one of {', '.join(map(str, allowed))}; got {value!r}", parameter=parameter
        )
    return str(value)


# ----------------------------------------------------------------- exact paging
async def exact_page(
    fetch: Callable[[int, int], Awaitable[tuple[list[dict[str, Any]], bool]]],
    keep: Callable[[dict[str, Any]], bool],
    offset: int,
    limit: int,
    batch: int = 500,
    max_scan: int = 200_000,
) -> RecordPage:
    """Page `limit` records after `offset` *matching* ones, when the upstream cannot evaluate `keep` itself.

    `fetch(upstream_offset, upstream_limit)` returns (records, more_upstream). The scan starts at the upstream's
    first record on every call (an upstream offset cannot be derived from a filtered one); the read cache
    makes that cheap for consecutive pages. Reads one record past the page to know whether more exist, so a
    page is never short while more matches exist and `more` is exact. Scanning more than `max_scan` upstream
    records → 400 asking for a narrower query.
    """
    if not callable(keep):
        raise TypeError("keep must be callable")
    matched_seen = 0
    out: list[dict[str, Any]] = []
    upstream_offset = 0
    while True:
        records, more_upstream = await fetch(upstream_offset, batch)
        for record in records:
            if not keep(record):
                continue
            if matched_seen >= offset:
                if len(out) == limit:
                    return RecordPage(out, None, True)
                out.append(record)
            matched_seen += 1
        upstream_offset += len(records)
        if not more_upstream or not records:
            return RecordPage(out, matched_seen, False)
        if upstream_offset >= max_scan:
            raise InvalidParameter(
                f"this filter needs more than {max_scan} upstream records to be scanned; narrow the query "
                "(bbox, datetime or a pushed-down property)",
                parameter="filter",
            )


def sortable_fields(source: Any) -> set[str]:
    """The optional `FeatureSource.sortable()` hook, or nothing when the source does not have it."""
    hook = getattr(source, "sortable", None)
    return set(hook()) if callable(hook) else set()
