"""Sentinel Hub Catalog searches, returning pystac objects (`records.py` maps every record).

The rules the upstream imposes (digest §2.3, §3) live here once:
- exactly one collection per search;
- `datetime` is required: when the caller gives none, the collection's temporal extent is sent;
- `limit` is 1..100: larger asks are clamped, and `search_all` pages on with the integer `context.next`
  (POST body `{"next": N}`) until it has what was asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pystac

from geofed import errors
from providers.sentinelhub import records
from providers.sentinelhub.client import NAME, TITLE, SentinelHubClient

MAX_LIMIT = 100


@dataclass
class SearchRequest:
    collection: str  # native id, e.g. sentinel-2-l2a
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None
    ids: list[str] | None = None
    filter: str | dict[str, Any] | None = None  # CQL2 text or CQL2 JSON, passed through
    filter_lang: str | None = None
    fields: dict[str, list[str]] | None = None  # {"include": [...], "exclude": [...]}
    limit: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchPage:
    items: list[pystac.Item]
    next: int | None  # the upstream's `context.next`; None when there is no further page


def clamp_limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def rfc3339(value: dt.datetime | None) -> str:
    if value is None:
        return ".."
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class Catalog:
    def __init__(self, client: SentinelHubClient | None = None) -> None:
        self.client = client or SentinelHubClient()

    async def collections(self) -> list[pystac.Collection]:
        payload = await self.client.collections()
        return [records.to_collection(c) for c in payload.get("collections") or []]

    async def collection(self, collection_id: str) -> pystac.Collection:
        return records.to_collection(await self._collection_record(collection_id))

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        payload = await self.client.queryables(records.native_id(collection_id))
        return dict(payload.get("properties") or {})

    async def item(self, collection_id: str, item_id: str) -> pystac.Item:
        native = records.native_id(collection_id)
        try:
            return records.to_item(await self.client.item(native, item_id))
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"item '{item_id}' does not exist in collection '{collection_id}'",
                                  upstream=NAME) from None

    async def search(self, request: SearchRequest, next_token: int | None = None) -> SearchPage:
        """One upstream page (at most 100 items)."""
        body = await self.body(request, next_token)
        try:
            payload = await self.client.search(body)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"collection '{request.collection}' does not exist at {TITLE}",
                                  upstream=NAME) from None
        items = [records.to_item(f) for f in payload.get("features") or []]
        nxt = (payload.get("context") or {}).get("next")
        if nxt is not None and not isinstance(nxt, int):
            raise errors.UpstreamError(f"{TITLE} returned a non-integer paging token", upstream=NAME)
        return SearchPage(items, nxt if items else None)

    async def search_all(self, request: SearchRequest, max_items: int | None = None) -> AsyncIterator[pystac.Item]:
        """Every match (or the first `max_items`), paging upstream 100 at a time."""
        wanted = max_items if max_items is not None else request.limit
        token: int | None = None
        sent = 0
        while True:
            page = await self.search(request, token)
            for item in page.items:
                if max_items is not None and sent >= wanted:
                    return
                yield item
                sent += 1
            if page.next is None or (max_items is not None and sent >= wanted):
                return
            token = page.next

    async def body(self, request: SearchRequest, next_token: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "collections": [records.native_id(request.collection)],
            "datetime": await self._datetime(request),
            "limit": clamp_limit(request.limit),
        }
        if request.bbox is not None:
            body["bbox"] = list(request.bbox)
        if request.intersects is not None:
            body["intersects"] = request.intersects
        if request.ids:
            body["ids"] = list(request.ids)
        if request.filter not in (None, "", {}):
            body["filter"] = request.filter
            body["filter-lang"] = request.filter_lang or (
                "cql2-json" if isinstance(request.filter, dict) else "cql2-text"
            )
        if request.fields:
            body["fields"] = request.fields
        if next_token is not None:
            body["next"] = next_token
        body.update(request.extra)
        return body

    async def _datetime(self, request: SearchRequest) -> str:
        if request.start is not None or request.end is not None:
            return f"{rfc3339(request.start)}/{rfc3339(request.end)}"
        # The upstream requires datetime: without one from the caller, ask for the collection's whole extent.
        record = await self._collection_record(request.collection)
        intervals = ((record.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
        start, end = (intervals[0] + [None, None])[:2]
        return f"{start or '..'}/{end or '..'}"

    async def _collection_record(self, collection_id: str) -> dict[str, Any]:
        native = records.native_id(collection_id)
        try:
            return await self.client.collection(native)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"collection '{collection_id}' does not exist at {TITLE}", upstream=NAME) \
                from None
