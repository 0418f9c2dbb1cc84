"""What a federation member offers the STAC bridge.

Each upstream contributes members through `providers/<upstream>/stac.py: def members() -> list[Member]`:
- geofed's own collections: `SourceMember(upstream, [FeatureSource, ...])`, built on the same
  `FeatureSource`s (and so the same `records.py` mapping) as the OGC face;
- remote STAC APIs (Sentinel Hub Catalog, CarbonMapper STAC): a member wrapping the upstream's STAC client,
  with collection ids prefixed `<upstream>:<native id>`;
- metadata-only collections (AppEEARS products): a member whose `search` returns nothing.

The bridge routes, merges, signs paging state and evaluates the full CQL2 filter again on what members
return, so a member may push down only part of a filter and results stay exact.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from geofed import errors
from geofed.query import BBox, FeatureQuery, FeatureSource

LOGGER = logging.getLogger("geofed.stac")
SortBy = list[tuple[str, Literal["asc", "desc"]]]
# The first key of the default order (datetime descending, then collection, then id).
DEFAULT_LEAD: SortBy = [("datetime", "desc")]


@dataclass
class SearchParams:
    collections: list[str]  # federated collection ids, all owned by the member receiving them
    limit: int = 10
    ids: list[str] | None = None
    bbox: BBox | None = None
    intersects: dict[str, Any] | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    filter: Any | None = None  # pygeofilter AST of the whole CQL2 filter
    filter_raw: Any | None = None  # the filter as the client sent it (CQL2 text str or CQL2 JSON dict)
    filter_lang: str | None = None  # "cql2-text" | "cql2-json"
    sortby: SortBy = field(default_factory=list)


@dataclass
class MemberPage:
    items: list[dict[str, Any]]  # STAC items as dicts; `collection` is the federated id
    # JSON-able native paging state for the following page (an int, an offset dict — never a URL); None =
    # exhausted. It travels inside the bridge's signed token, so keep it small.
    next: Any | None = None
    # Number of items matching the *whole* query, or None when unknown or when the member evaluated only part
    # of the filter (the bridge adds the members' counts into `numberMatched`).
    matched: int | None = None


@runtime_checkable
class Member(Protocol):
    """Optional attributes the bridge reads with defaults (not part of the protocol check):
    - `searchable: bool = True` — False for metadata-only members (AppEEARS): a search without `collections`
      then skips them instead of listing their collections;
    - `max_page_size: int = 100` — the most items the bridge asks for in one `search` call;
    - `upstream: str = name` — the upstream's name when `name` differs (two members of one upstream): used
      in error messages, `federation:missing` and the collections' `via` link;
    - `sortable(collections) -> set[str]` (default: nothing) — fields (as `sortby` names them) on which
      `search` over these collections orders its items when that field leads the order, ascending or
      descending, *ties in any order*: the first entry of `params.sortby`, or `datetime` descending when
      `sortby` is empty. The bridge then merges the member lazily and exactly (it reads on while the last item
      it holds still ties with the one it is about to return) instead of reading all its matches to sort them.
      `sorts_natively` is the stronger promise (the whole order, ties included).
    `search` must return exactly the items of the page `state` designates (same state → same page), because
    the bridge may re-read a page instead of stashing its items in the token.
    """

    name: str  # upstream name: carbonmapper | sentinelhub | epoch | spaceknow | appeears

    async def collections(self) -> list[dict[str, Any]]:
        """STAC collections (dicts, federated ids, without links: the bridge adds them)."""
        ...

    def owns(self, collection_id: str) -> bool: ...

    def sorts_natively(self, sortby: SortBy) -> bool:
        """True when `search` returns items in exactly this order (default order when `sortby` is empty:
        datetime descending, then collection, then id)."""
        ...

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage: ...

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]: ...

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        """JSON Schema properties: name → schema."""
        ...


class SourceMember:
    """A member over geofed's own collections (FeatureSources), paged by offset. Its sources evaluate the whole
    query through the engine, on the STAC item, in the STAC vocabulary (`evaluates_query`)."""

    evaluates_query = True

    def __init__(self, name: str, sources: list[FeatureSource]) -> None:
        self.name = name
        self.sources = {s.collection_id: s for s in sources}

    async def collections(self) -> list[dict[str, Any]]:
        out = []
        for source in self.sources.values():
            collection = source.collection.stac()  # type: ignore[attr-defined]
            live = getattr(source, "live_interval", None)
            try:
                interval = await live() if live is not None else None
            except errors.GeofedError as exc:  # the declared extent stands; the collection is still listed
                LOGGER.warning("%s: no live temporal extent (%s)", source.collection_id, exc.message)
                interval = None
            if interval is not None:
                collection["extent"]["temporal"]["interval"] = [list(interval)]
            out.append(collection)
        return out

    def owns(self, collection_id: str) -> bool:
        return collection_id in self.sources

    def sorts_natively(self, sortby: SortBy) -> bool:
        return False

    def sortable(self, collections: list[str]) -> set[str]:
        """What every one of these collections' sources sorts on upstream (one collection: the bridge gives
        a member that does not sort natively one lane per collection; several are read one after another)."""
        if len(collections) != 1 or collections[0] not in self.sources:
            return set()
        return sortable_fields(self.sources[collections[0]])

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        """One collection at a time; state = {"c": index of the collection, "o": offset inside it}."""
        state = state or {"c": 0, "o": 0}
        ids = [c for c in params.collections if c in self.sources]
        index, offset = int(state["c"]), int(state["o"])
        if index >= len(ids):
            return MemberPage([], None)
        source = self.sources[ids[index]]
        # Pass the leading sort key through when the source sorts on it upstream (the only key it is asked
        # for: sources sort on one property); otherwise the source's own order, which the bridge re-sorts.
        lead = (params.sortby or DEFAULT_LEAD)[:1]
        query = FeatureQuery(
            offset=offset, limit=params.limit, bbox=params.bbox, intersects=params.intersects,
            start=params.start, end=params.end, filter=params.filter, ids=params.ids,
            sortby=lead if lead and lead[0][0] in sortable_fields(source) else [], face="stac",
        )
        page = await source.query(query)
        items = page.objects if page.objects is not None else [source.to_item(r) for r in page.records]
        if page.more:
            nxt: Any = {"c": index, "o": offset + len(page.records)}
        elif index + 1 < len(ids):
            nxt = {"c": index + 1, "o": 0}
        else:
            nxt = None
        return MemberPage(items, nxt, page.matched if len(ids) == 1 else None)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        source = self.sources[collection_id]
        return source.to_item(await source.get(item_id))

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return self.sources[collection_id].fields("stac")


def sortable_fields(source: Any) -> set[str]:
    """The STAC item fields a source's upstream sorts on: its pushdown table's sorts, under the items' names
    (an upstream's order on a field equals the items' order on the field they carry it as)."""
    table = getattr(source, "table", None)
    names = getattr(source, "stac_names", {}) or {}
    if table is None:
        return set()
    return {names.get(name, name) for name in table.sorts if names.get(name, name)}
