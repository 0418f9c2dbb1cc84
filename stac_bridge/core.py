"""The federated STAC API client: one `AsyncBaseCoreClient` over every member (cf. stac-fastapi-pgstac's core).

Handlers run on uvicorn's loop; member I/O runs on geofed's upstream loop (`run_async`), where the shared
`UpstreamClient`s live. Responses are built as plain dicts (orjson) so that federation metadata —
`federation:members`, `federation:missing` and the `X-Geofed-Partial` header — can ride along.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import attr
import orjson
import shapely.geometry
from fastapi import Request
from stac_fastapi.extensions.filter.client import AsyncBaseFiltersClient
from stac_fastapi.types.core import AsyncBaseCoreClient
from starlette.responses import Response

from geofed import errors
from geofed.http.loop import run_async
from geofed.query import parse_bbox, parse_interval
from stac_bridge.federation import Federation, Page
from stac_bridge.links import GEOJSON, JSON, SCHEMA, Links, collection_path
from stac_bridge.member import Member
from stac_bridge.registry import Registry, guarded, title, upstream
from stac_bridge.search import FederatedQuery

PARTIAL_HEADER = "X-Geofed-Partial"


def json_response(body: dict[str, Any], media_type: str = JSON, partial: bool = False,
                  status_code: int = 200) -> Response:
    headers = {PARTIAL_HEADER: "true", "Cache-Control": "no-store"} if partial else {}
    return Response(orjson.dumps(body), status_code=status_code, media_type=media_type, headers=headers)


@attr.s
class FederatedClient(AsyncBaseCoreClient):
    registry: Registry = attr.ib(kw_only=True)
    federation: Federation = attr.ib(kw_only=True)
    links: Links = attr.ib(kw_only=True)

    # ------------------------------------------------------------ landing, conformance
    async def landing_page(self, **kwargs: Any) -> Response:
        url = self.links.url
        body = {
            "type": "Catalog", "stac_version": self.stac_version, "id": self.landing_page_id,
            "title": self.title, "description": self.description, "conformsTo": self.conformance_classes(),
            "links": [
                {"rel": "self", "type": JSON, "href": url()}, self.links.root(),
                {"rel": "data", "type": JSON, "href": url("collections")},
                {"rel": "conformance", "type": JSON, "href": url("conformance")},
                {"rel": "search", "type": GEOJSON, "href": url("search"), "method": "GET"},
                {"rel": "search", "type": GEOJSON, "href": url("search"), "method": "POST"},
                {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": SCHEMA,
                 "href": url("queryables")},
                {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0", "href": url("api")},
                {"rel": "service-doc", "type": "text/html", "href": url("api.html")},
            ],
        }
        return json_response(body)

    # ------------------------------------------------------------ collections
    def _decorate(self, member: Member, collection: dict[str, Any]) -> dict[str, Any]:
        return self.links.collection(dict(collection), upstream(member), title(member))

    async def all_collections(self, request: Request | None = None, bbox: Any = None, datetime: str | None = None,
                              limit: int | None = None, q: list[str] | None = None, offset: int | None = None,
                              **kwargs: Any) -> Response:
        area = parse_bbox(list(bbox) if bbox else None)
        start, end = parse_interval(datetime)
        terms = [t.strip().lower() for t in q or () if t.strip()]
        found, failed = await run_async(self.registry.collections())
        selected = [
            self._decorate(m, c) for m, c in found
            if _collection_matches(c, area, start, end, terms)
        ]
        selected.sort(key=lambda c: str(c["id"]))
        offset = max(0, int(offset or 0))
        limit = int(limit or 10)
        page = selected[offset:offset + limit]
        query = [(k, v) for k, v in (request.query_params.multi_items() if request else []) if k != "offset"]
        links = [{"rel": "self", "type": JSON, "href": self.links.url("collections", query or None)},
                 self.links.root(), {"rel": "parent", "type": JSON, "href": self.links.url()}]
        if offset + limit < len(selected):
            links.append({"rel": "next", "type": JSON,
                          "href": self.links.url("collections", [*query, ("offset", str(offset + limit))])})
        if offset > 0:
            links.append({"rel": "prev", "type": JSON,
                          "href": self.links.url("collections", [*query, ("offset", str(max(0, offset - limit)))])})
        body: dict[str, Any] = {"collections": page, "links": links, "numberReturned": len(page)}
        if not failed:
            body["numberMatched"] = len(selected)
        else:
            body["federation:missing"] = sorted(failed)
            body["federation:members"] = {n: {"status": "failed", "error": e.message} for n, e in failed.items()}
            if set(failed) == {upstream(m) for m in self.registry.members}:
                raise next(iter(failed.values())) if len(failed) == 1 else errors.UpstreamError(
                    "every federation member failed to list its collections: " + ", ".join(sorted(failed)))
        return json_response(body, partial=bool(failed))

    async def get_collection(self, collection_id: str, **kwargs: Any) -> Response:
        member, collection = await run_async(self.registry.collection(collection_id))
        return json_response(self._decorate(member, collection))

    # ------------------------------------------------------------ items
    async def get_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Response:
        member = self.registry.owner(collection_id)
        item = await run_async(guarded(member, lambda: member.get_item(collection_id, item_id),
                                       self.registry.timeout))
        if isinstance(item, dict) and item.get("collection") not in (None, collection_id):
            raise errors.NotFound(f"item '{item_id}' is not in collection '{collection_id}'")
        return json_response(self.links.item(dict(item)), GEOJSON)

    async def item_collection(self, collection_id: str, request: Request | None = None, **kwargs: Any) -> Response:
        self.registry.owner(collection_id)  # 404 before any upstream call
        query = FederatedQuery.from_request(**{**kwargs, "collections": [collection_id]})
        return await self._search(query, request, f"{collection_path(collection_id)}/items", post=False)

    async def get_search(self, request: Request | None = None, **kwargs: Any) -> Response:
        return await self._search(FederatedQuery.from_request(**kwargs), request, "search", post=False)

    async def post_search(self, search_request: Any, request: Request | None = None, **kwargs: Any) -> Response:
        return await self._search(FederatedQuery.from_request(search_request), request, "search", post=True)

    async def _search(self, query: FederatedQuery, request: Request | None, path: str, post: bool) -> Response:
        page: Page = await run_async(self.federation.page(query))
        features = [query.project(self.links.item(dict(item))) for item in page.items]
        links: list[dict[str, Any]] = [self.links.root()]
        params = [(k, v) for k, v in (request.query_params.multi_items() if request else []) if k != "token"]
        if not post:
            links.append({"rel": "self", "type": GEOJSON, "href": self.links.url(path, params or None)})
        if page.token and post:
            links.append({"rel": "next", "type": GEOJSON, "method": "POST", "href": self.links.url(path),
                          "body": {"token": page.token}, "merge": True})
        elif page.token:
            links.append({"rel": "next", "type": GEOJSON, "method": "GET",
                          "href": self.links.url(path, [*params, ("token", page.token)])})
        body: dict[str, Any] = {"type": "FeatureCollection", "features": features, "links": links,
                                "numberReturned": len(features), "federation:members": page.members}
        if page.matched is not None:
            body["numberMatched"] = page.matched
        if page.partial:
            body["federation:missing"] = page.missing
        return json_response(body, GEOJSON, partial=page.partial)


@attr.s
class QueryablesClient(AsyncBaseFiltersClient):
    """Queryables per collection from its member; the global ones are the union over every collection."""

    registry: Registry = attr.ib(kw_only=True)
    links: Links = attr.ib(kw_only=True)

    async def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> Response:
        properties: dict[str, Any] = dict(BASE_QUERYABLES)
        if collection_id is not None:
            member = self.registry.owner(collection_id)
            found = await run_async(guarded(member, lambda: member.queryables(collection_id),
                                            self.registry.timeout))
            properties.update(found)
            href = f"{self.links.collection_url(collection_id)}/queryables"
        else:
            href = self.links.url("queryables")
            for found in await run_async(self._all_queryables()):
                for name, schema in found.items():
                    properties.setdefault(name, schema)
        body = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": href, "type": "object",
                "title": f"Queryables of {collection_id}" if collection_id else "Queryables of geofed's STAC API",
                "properties": properties, "additionalProperties": collection_id is None}
        return json_response(body, SCHEMA)


    async def _all_queryables(self) -> list[dict[str, Any]]:
        listed, _ = await self.registry.collections()
        calls = [guarded(m, lambda m=m, c=c: m.queryables(c["id"]), self.registry.timeout)
                 for m, c in listed if getattr(m, "searchable", True)]
        # one member's queryables missing from the union is not an error
        return [r for r in await asyncio.gather(*calls, return_exceptions=True) if isinstance(r, dict)]


BASE_QUERYABLES: dict[str, Any] = {
    "id": {"title": "Item ID", "type": "string"},
    "collection": {"title": "Collection ID", "type": "string"},
    "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
    "datetime": {"title": "Acquired", "type": "string", "format": "date-time"},
}


def _collection_matches(collection: dict[str, Any], area: Any, start: dt.datetime | None,
                        end: dt.datetime | None, terms: list[str]) -> bool:
    """Collection search: bbox and datetime against the extent, free text over title, description, keywords."""
    if terms:
        text = " ".join([str(collection.get("title") or ""), str(collection.get("description") or ""),
                         *map(str, collection.get("keywords") or ())]).lower()
        if not any(term in text for term in terms):
            return False
    extent = collection.get("extent") or {}
    if area is not None:
        boxes = (extent.get("spatial") or {}).get("bbox") or [[-180, -90, 180, 90]]
        b = boxes[0]
        if not shapely.geometry.box(b[0], b[1], b[-2], b[-1]).intersects(shapely.geometry.box(*area)):
            return False
    if start or end:
        intervals = (extent.get("temporal") or {}).get("interval") or [[None, None]]
        first, last = (_parse(v) for v in intervals[0])
        if (end is not None and first is not None and first > end) or (
                start is not None and last is not None and last < start):
            return False
    return True


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
