"""Sentinel Hub's Catalog as a member of geofed's STAC federation: collections `sentinelhub:<native id>`.

One upstream search per collection (the upstream takes exactly one), `datetime` always sent, `limit` clamped
to 1..100, native paging state `{"c": <collection index>, "n": <upstream context.next>}`. The whole CQL2 filter
is passed through as the client wrote it (the upstream evaluates CQL2 text and JSON; a filter it rejects is a
400 carrying its message). Sentinel Hub returns items in its own order, so `sorts_natively` is False and the
bridge sorts.
"""

from __future__ import annotations

from typing import Any

import orjson
from pygeofilter.backends.cql2_json import to_cql2

from geofed import upstreams
from providers.sentinelhub import records
from providers.sentinelhub.catalog import MAX_LIMIT, Catalog, SearchRequest, clamp_limit
from providers.sentinelhub.client import NAME
from stac_bridge.member import Member, MemberPage, SearchParams, SortBy


class CatalogMember:
    name = NAME
    max_page_size = MAX_LIMIT

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:  # built on first use: the shared UpstreamClient lives on the upstream loop
            self._catalog = Catalog()
        return self._catalog

    async def collections(self) -> list[dict[str, Any]]:
        payload = await self.catalog.client.collections()
        return [records.collection_dict(c) for c in payload.get("collections") or []]

    def owns(self, collection_id: str) -> bool:
        return collection_id.startswith(records.PREFIX)

    def sorts_natively(self, sortby: SortBy) -> bool:
        return False  # the Catalog's order is its own (not documented); the bridge sorts

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        mine = [c for c in params.collections if self.owns(c)]
        index = int((state or {}).get("c", 0))
        token = (state or {}).get("n")
        filter_raw, filter_lang = _filter(params)
        # An empty collection moves on to the next one here, so no empty page carries a `next` state.
        while index < len(mine):
            request = SearchRequest(
                collection=records.native_id(mine[index]), start=params.start, end=params.end, bbox=params.bbox,
                intersects=params.intersects, ids=params.ids, filter=filter_raw, filter_lang=filter_lang,
                limit=clamp_limit(params.limit),
            )
            page = await self.catalog.search(request, token)
            items = [i.to_dict(include_self_link=False, transform_hrefs=False) for i in page.items]
            if page.next is not None:
                return MemberPage(items, {"c": index, "n": page.next})
            index, token = index + 1, None
            if items:
                return MemberPage(items, {"c": index, "n": None} if index < len(mine) else None)
        return MemberPage([], None)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        item = await self.catalog.item(collection_id, item_id)
        return item.to_dict(include_self_link=False, transform_hrefs=False)

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        found = await self.catalog.queryables(collection_id)
        # `datetime` is filterable upstream too (CQL2 on datetime), though the queryables document omits it.
        found.setdefault("datetime", {"description": "Acquisition time", "type": "string", "format": "date-time"})
        return found


def _filter(params: SearchParams) -> tuple[Any, str | None]:
    """The client's filter as written; an AST without its source is re-encoded as CQL2 JSON."""
    raw, lang = params.filter_raw, params.filter_lang
    if raw not in (None, "", {}):
        if isinstance(raw, str) and lang == "cql2-json":
            raw = orjson.loads(raw)  # CQL2 JSON that arrived as text (GET): send it as a JSON object
        return raw, lang
    if params.filter is not None:
        return orjson.loads(to_cql2(params.filter)), "cql2-json"
    return None, None


def members() -> list[Member]:
    if upstreams.mode(NAME) == "disabled":
        return []
    return [CatalogMember()]
