"""CarbonMapper's members of the STAC federation.

- `SourceMember("carbonmapper", [plumes, sources, scenes])`: geofed's own three collections (`sources.py`),
  queried through the engine on the STAC face and mapped to items by `records.py`.
- `CarbonMapperStacMember`: the upstream STAC API (`/api/v1/stac/`), collection ids `carbonmapper:<native id>`.
  It pushes down collections, ids, bbox, intersects (as the GeoJSON string the API wants) and datetime;
  the CQL2 filter stays with the bridge (the upstream has no CQL2). Paging state = the upstream offset.
  It sorts natively only when the upstream advertises the STAC sort extension in its conformance classes
  (the doc does not list `sortby`); it then sends the order explicitly, the default one included.
"""

from __future__ import annotations

from typing import Any

import orjson

from geofed import errors
from geofed.query import rfc3339
from providers.carbonmapper.client import MAX_LIMIT, StacClient
from providers.carbonmapper.records import GASES, with_preview_roles
from providers.carbonmapper.sources import PlumeSource, SceneSource, SourceSource
from stac_bridge.member import Member, MemberPage, SearchParams, SortBy, SourceMember

PREFIX = "carbonmapper:"
SORT_CONFORMANCE = "https://api.stacspec.org/v1.0.0/item-search#sort"
DEFAULT_ORDER: SortBy = [("datetime", "desc"), ("collection", "asc"), ("id", "asc")]
UPSTREAM_LINKS = {"self", "parent", "collection", "root", "items"}


class CarbonMapperStacMember:
    """The CarbonMapper STAC API as a federation member."""

    name = "carbonmapper-stac"  # distinct from the SourceMember's name; `upstream` names the upstream
    upstream = "carbonmapper"

    def __init__(self) -> None:
        self.client = StacClient()
        self._sorts: bool | None = None  # learnt from the upstream's conformance classes

    async def _learn_sorting(self) -> bool:
        if self._sorts is None:
            self._sorts = SORT_CONFORMANCE in await self.client.conformance()
        return self._sorts

    async def collections(self) -> list[dict[str, Any]]:
        await self._learn_sorting()
        out = []
        for collection in await self.client.collections():
            out.append({**collection, "id": PREFIX + str(collection.get("id")), "links": []})
        return out

    def owns(self, collection_id: str) -> bool:
        return collection_id.startswith(PREFIX)

    def sorts_natively(self, sortby: SortBy) -> bool:
        return bool(self._sorts)

    @staticmethod
    def _item(item: dict[str, Any]) -> dict[str, Any]:
        links = [link for link in item.get("links") or [] if link.get("rel") not in UPSTREAM_LINKS]
        return {**item, "collection": PREFIX + str(item.get("collection")), "links": links,
                "assets": with_preview_roles(item.get("assets") or {})}

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        offset = int((state or {}).get("o", 0))
        body: dict[str, Any] = {
            "limit": max(1, min(params.limit, MAX_LIMIT)),
            "collections": [c.removeprefix(PREFIX) for c in params.collections if self.owns(c)],
        }
        if params.ids:
            body["ids"] = params.ids
        if params.bbox:
            body["bbox"] = list(params.bbox)
        if params.intersects:
            body["intersects"] = orjson.dumps(params.intersects).decode()  # the API takes a string
        if params.start or params.end:
            start, end = rfc3339(params.start) or "..", rfc3339(params.end) or ".."
            body["datetime"] = start if params.start == params.end else f"{start}/{end}"
        if await self._learn_sorting():
            order = params.sortby or DEFAULT_ORDER
            body["sortby"] = [{"field": f.removeprefix(PREFIX), "direction": d} for f, d in order]
        page = await self.client.search(body, offset)
        nxt = {"o": page.next_offset} if page.next_offset is not None else None
        # the upstream evaluates no CQL2: its count is of the unfiltered search, so it is no count of ours
        matched = page.matched if params.filter is None else None
        return MemberPage([self._item(i) for i in page.items], nxt, matched)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        try:
            item = await self.client.item(collection_id.removeprefix(PREFIX), item_id)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no item {item_id!r} in {collection_id}") from None
        return self._item(item)

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        # The upstream publishes no queryables; these are the properties its items carry.
        return {
            "id": {"type": "string"},
            "datetime": {"type": "string", "format": "date-time"},
            "platform": {"type": "string"},
            "instruments": {"type": "array", "items": {"type": "string"}},
            "gas": {"type": "string", "enum": list(GASES)},
        }


def members() -> list[Member]:
    return [SourceMember("carbonmapper", [PlumeSource(), SourceSource(), SceneSource()]), CarbonMapperStacMember()]
