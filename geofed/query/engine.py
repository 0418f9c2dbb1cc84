"""The query engine: one path from a `FeatureQuery` to a page of records, for every collection and both faces.

    query ──► plan (pushdown table) ──► upstream fetches ──► local evaluation of the remainder ──► sort ──► page

A source declares *what* its upstream can do (`EngineSource`: a `PushdownTable`, the time fields of its
features, the names its STAC items give to feature properties) and *how* to read one upstream page
(`fetch(params, offset, limit) -> Batch`); the engine decides the rest. Filters and sort keys arrive in the
vocabulary of the face that asked (OGC: feature properties; STAC: item properties) and are evaluated on that
face's own object, so a filter always means what the face's queryables document says. For pushdown they are
translated into the table's (OGC) vocabulary through the one rename map that `records.py` declares.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from geofed import cql2
from geofed.errors import InvalidParameter
from geofed.query.evaluate import ITEM_TIME, Matcher, matcher
from geofed.query.model import Face, FeatureQuery, RecordPage
from geofed.query.order import SortKey
from geofed.query.paging import Batch, direct_page, scan_page, sorted_page
from geofed.query.pushdown import Params, Plan, PushdownTable, combined_filter, split, validate

DEFAULT_MAX_SCAN = 200_000


class EngineSource(Protocol):
    """What the engine reads from a source (besides `fields`, `to_feature`, `to_item` of `FeatureSource`)."""

    collection_id: str
    table: PushdownTable
    time_fields: tuple[str, ...]  # the feature's time: (instant,) or (instant, range start, range end)
    stac_names: dict[str, str]  # feature property → STAC item property, where the two faces differ
    page_size: int  # the most records one upstream call returns

    def fields(self, face: Face = "ogc") -> dict[str, dict[str, Any]]: ...

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]: ...

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]: ...

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch: ...


@dataclass
class Prepared:
    """A query made ready for one source: upstream parameters, and the local check on the face's object."""

    plan: Plan
    keep: Callable[[dict[str, Any]], bool]  # on a *record* (mapped to the face's object once, memoized)
    view: Callable[[dict[str, Any]], dict[str, Any]]  # record → the face's object (memoized)
    sort_key: Callable[[dict[str, Any]], SortKey]  # on a record, in the face's vocabulary
    node: Any  # the whole filter (query-string equalities included), in the face's vocabulary


def temporal_fields(fields: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, schema in fields.items() if schema.get("format") in ("date-time", "date")}


def stac_fields(ogc_fields: dict[str, dict[str, Any]], stac_names: dict[str, str],
                extra: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The STAC face's queryables: the feature's, under the names the items give them (`stac_names`; a name
    mapped to "" is not on the items), plus the item's own (`datetime` ...)."""
    out = {stac_names.get(n, n): s for n, s in ogc_fields.items() if stac_names.get(n, n)}
    out.setdefault("datetime", {"type": "string", "format": "date-time"})
    return {**out, **(extra or {})}


# what a filter may name besides a face's queryables: the object's own members
OWN_MEMBERS = {"ogc": {"id", "geometry"},
               "stac": {"id", "collection", "geometry", "datetime", "start_datetime", "end_datetime"}}


def check_names(node: Any, fields: dict[str, dict[str, Any]], face: Face, collection_id: str) -> None:
    """A filter naming a property this collection's objects do not have is a 400 naming it (OGC API Features
    Part 3 and STAC API Filter): answered at once, without reading the upstream to find that nothing matches."""
    unknown = sorted(cql2.attributes(node) - set(fields) - OWN_MEMBERS[face])
    if unknown:
        raise InvalidParameter(
            f"'filter' refers to {', '.join(unknown)}, which {collection_id} does not have; its queryables are "
            f"listed at {'/stac' if face == 'stac' else ''}/collections/{collection_id}/queryables",
            parameter="filter")


def prepare(source: EngineSource, q: FeatureQuery) -> Prepared:
    fields = source.fields(q.face)
    node = combined_filter(q, fields)
    check_names(node, fields, q.face, source.collection_id)
    validate(node, fields)
    to_table = {v: k for k, v in source.stac_names.items() if v} if q.face == "stac" else {}
    table_q = dataclasses.replace(q, sortby=[(to_table.get(n, n), d) for n, d in q.sortby])
    plan = split(cql2.rename(node, to_table), table_q, source.table)
    mapper = source.to_item if q.face == "stac" else source.to_feature
    # Each record is mapped once per request: the local check maps it, and the page reuses the mapping of the
    # records that matched. Bounded (a scan may read many records; only matches are kept, newest first).
    memo: OrderedDict[int, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
    memo_size = 4 * (q.offset + q.limit) + 256

    def view(record: dict[str, Any]) -> dict[str, Any]:
        hit = memo.get(id(record))
        return hit[1] if hit is not None and hit[0] is record else mapper(record)

    def remember(record: dict[str, Any], obj: dict[str, Any]) -> None:
        memo[id(record)] = (record, obj)
        if len(memo) > memo_size:
            memo.popitem(last=False)

    check: Matcher = matcher(
        ids=q.ids, bbox=q.bbox, intersects=q.intersects, start=q.start, end=q.end,
        time_fields=ITEM_TIME if q.face == "stac" else source.time_fields, node=node,
        temporal=temporal_fields(fields),
    )
    order = list(q.sortby)

    def keep(record: dict[str, Any]) -> bool:
        obj = view(record)
        if not check(obj):
            return False
        remember(record, obj)
        return True

    return Prepared(plan, keep, view, lambda r: SortKey.of(view(r), order), node)


async def run(source: EngineSource, q: FeatureQuery, max_scan: int = DEFAULT_MAX_SCAN) -> RecordPage:
    """One page of records for `q` (see the module's docstring)."""
    prepared = prepare(source, q)
    plan = prepared.plan
    if plan.empty:
        return RecordPage([], 0, False)

    def fetch(offset: int, limit: int) -> Awaitable[Batch]:
        return source.fetch(plan.params, offset, limit)

    size = max(1, int(source.page_size))
    if not plan.sorted_upstream:
        page = await sorted_page(fetch, prepared.keep, prepared.sort_key, q.offset,
                                 0 if q.hits_only else q.limit, size, max_scan)
    elif plan.exact:
        page = await direct_page(fetch, q.offset, q.limit, q.hits_only, size)
    else:
        page = await scan_page(fetch, prepared.keep, 0 if q.hits_only else q.offset, q.limit, size, max_scan,
                               count=q.hits_only)
    if q.hits_only:
        page = RecordPage([], page.matched, False)
    page.objects = [prepared.view(r) for r in page.records]
    return page
