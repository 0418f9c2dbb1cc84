"""AppEEARS on the STAC face: every product is a metadata-only collection `appeears:<ProductAndVersion>`.

Search returns no items (an AppEEARS product is extracted on demand through `appeears-extract`, not browsed
item by item); the collections are found by collection listing and collection search.
"""

from __future__ import annotations

import asyncio
from typing import Any

from geofed import errors
from providers.appeears import records
from providers.appeears.client import NAME, TITLE, AppeearsClient
from stac_bridge.member import Member, MemberPage, SearchParams, SortBy

LAYER_LOOKUPS = 8  # concurrent `GET /product/{id}` calls when describing the collections


class ProductMember:
    """A federation member whose collections are AppEEARS products and whose searches are empty."""

    name = NAME
    searchable = False  # no items: a search without `collections` skips these (they are found by listing)

    def __init__(self, client: AppeearsClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> AppeearsClient:
        if self._client is None:
            self._client = AppeearsClient()
        return self._client

    async def collections(self) -> list[dict[str, Any]]:
        products = [p for p in await self.client.products() if not p.get("Deleted")]
        gate = asyncio.Semaphore(LAYER_LOOKUPS)

        async def describe(product: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                try:
                    layers = await self.client.layers(str(product["ProductAndVersion"]))
                except errors.NotFound:
                    layers = None  # listed but without layers: still a collection, just without summaries
            return records.to_collection(product, layers)

        return list(await asyncio.gather(*(describe(p) for p in products)))

    async def collection(self, collection_id: str) -> dict[str, Any]:
        """One collection (without listing the others' layers); NotFound when the product is unknown."""
        pav = records.product_id(collection_id)
        product = next((p for p in await self.client.products() if p.get("ProductAndVersion") == pav), None)
        if product is None:
            raise errors.NotFound(f"{TITLE} has no product '{pav}'")
        return records.to_collection(product, await self.client.layers(str(pav)))

    def owns(self, collection_id: str) -> bool:
        return records.product_id(collection_id) is not None

    def sorts_natively(self, sortby: SortBy) -> bool:
        return True  # no items: any order is the requested one

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        return MemberPage([], None, 0)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        raise errors.NotFound(f"collection '{collection_id}' is metadata only: it has no items")

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return {}


def members() -> list[Member]:
    return [ProductMember()]
