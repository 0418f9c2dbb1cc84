"""CarbonMapper HTTP access and auth: the REST catalog and the STAC API (`/api/v1/stac/`).

Encoding (observed.md): the REST catalog takes `bbox` as four repeated keys and arrays as repeated keys, so
its parameters travel as a list of pairs; the STAC API takes `bbox` comma-joined (GET) or as a number array
(POST), `offset` as a query parameter even for POST, and `intersects` as a GeoJSON *string*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from geofed import errors
from geofed.http.auth import Auth, StaticBearer, Token, TokenAuth, jwt_expiry
from geofed.http.client import UpstreamClient
from geofed.settings import Settings
from geofed.upstreams import credentials, http

NAME = "carbonmapper"
TITLE = "CarbonMapper"
POLICY: dict[str, Any] = {}  # the defaults fit: 429 `Retry-After` is in seconds (observed.md)
MAX_LIMIT = 1000  # per upstream call ("limit: default is 500, max is 1000")
# Access-token lifetime when the token is not a JWT with an `exp` claim (the doc gives no lifetime).
DEFAULT_ACCESS_TTL = 300.0

Params = list[tuple[str, str]]


class CarbonMapperAuth(TokenAuth):
    """`POST /api/v1/token/pair` (email, password) → access + refresh; a stale access token is renewed with
    `POST /api/v1/token/refresh`, and when that is refused the pair is requested again."""

    def __init__(self, email: str, password: str, margin: float = 60.0) -> None:
        super().__init__(margin=margin)
        self.email = email
        self.password = password
        self._refresh: str | None = None

    async def fetch(self, client: UpstreamClient) -> Token:
        if self._refresh:
            refresh, self._refresh = self._refresh, None
            try:
                response = await client.token_request("POST", "/api/v1/token/refresh", json={"refresh": refresh})
                return self._store(client.decode_json(response))
            except errors.UpstreamAuthError:
                pass  # refresh token expired or revoked: log in again
        response = await client.token_request(
            "POST", "/api/v1/token/pair", json={"email": self.email, "password": self.password}
        )
        return self._store(client.decode_json(response))

    def _store(self, payload: Any) -> Token:
        if not isinstance(payload, dict) or not payload.get("access"):
            raise errors.UpstreamAuthError(f"{TITLE} answered the token request without an access token",
                                           upstream=NAME)
        self._refresh = payload.get("refresh") or self._refresh
        access = str(payload["access"])
        return Token(access, jwt_expiry(access) or time.time() + DEFAULT_ACCESS_TTL)

    def secrets(self) -> list[str]:
        return [*super().secrets(), self.password, *([self._refresh] if self._refresh else [])]


def make_auth(settings: Settings) -> Auth:
    """Anonymous by default (published data is public); a configured token as is; else email + password."""
    creds = credentials(NAME, settings)
    if creds.get("token"):
        return StaticBearer(creds["token"])
    if creds.get("email") and creds.get("password"):
        return CarbonMapperAuth(creds["email"], creds["password"], margin=settings.token_refresh_margin)
    return Auth()


def rest_bbox(bbox: tuple[float, float, float, float] | list[float]) -> Params:
    """The REST catalog's bbox: four repeated `bbox` keys."""
    return [("bbox", repr(float(v))) for v in bbox]


def _field(body: Any, name: str, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise errors.UpstreamError(f"{TITLE} returned a malformed {what} (no '{name}' list)", upstream=NAME)
    return body[name]


@dataclass
class ListPage:
    records: list[dict[str, Any]]
    total: int | None


class CatalogClient:
    """The REST catalog endpoints geofed reads (all OptionalAuth, cached reads)."""

    def __init__(self) -> None:
        self.http = http(NAME)

    async def plumes(self, params: Params) -> ListPage:
        body = await self.http.get_json("/api/v1/catalog/plumes/annotated", params=params, cache=True)
        return ListPage(_field(body, "items", "plume list"), _int(body.get("total_count")))

    async def plume(self, name: str) -> dict[str, Any]:
        return await self.http.get_json(f"/api/v1/catalog/plume/{quote(name, safe='')}", cache=True)

    async def sources(self, params: Params) -> list[dict[str, Any]]:
        """`sources.geojson`: every source (no paging) as GeoJSON features."""
        body = await self.http.get_json("/api/v1/catalog/sources.geojson", params=params, cache=True)
        return _field(body, "features", "source collection")

    async def source(self, name: str) -> dict[str, Any]:
        return await self.http.get_json(f"/api/v1/catalog/source/{quote(name, safe='')}", cache=True)

    async def source_of_plume(self, plume_name: str) -> dict[str, Any]:
        return await self.http.get_json(
            f"/api/v1/catalog/source/plume/name/{quote(plume_name, safe='')}", cache=True
        )

    async def scenes(self, params: Params) -> ListPage:
        body = await self.http.get_json("/api/v1/catalog/scenes/annotated", params=params, cache=True)
        return ListPage(_field(body, "items", "scene list"), _int(body.get("count")))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class StacPage:
    items: list[dict[str, Any]]
    next_offset: int | None
    matched: int | None


class StacClient:
    """The CarbonMapper STAC API (plain dicts)."""

    root = "/api/v1/stac"

    def __init__(self) -> None:
        self.http = http(NAME)

    async def conformance(self) -> list[str]:
        body = await self.http.get_json(f"{self.root}/conformance", cache=True)
        return list(body.get("conformsTo") or []) if isinstance(body, dict) else []

    async def collections(self) -> list[dict[str, Any]]:
        body = await self.http.get_json(f"{self.root}/collections", cache=True)
        return _field(body, "collections", "collection list")

    async def item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        path = f"{self.root}/collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}"
        item = await self.http.get_json(path, cache=True)
        if not isinstance(item, dict):
            raise errors.UpstreamError(f"{TITLE} returned a malformed STAC item", upstream=NAME)
        return item

    async def search(self, body: dict[str, Any], offset: int = 0) -> StacPage:
        """POST /search (idempotent: a read). `offset` goes in the query string, as the doc has it."""
        payload = await self.http.post_json(
            f"{self.root}/search", json=body, params={"offset": offset}, idempotent=True
        )
        features = _field(payload, "features", "search response")
        context = payload.get("context") or {}
        matched = _int(context.get("matched", payload.get("numberMatched")))
        links = payload.get("links") or []
        if links:
            has_next = any(link.get("rel") == "next" for link in links)
        elif matched is not None:
            has_next = offset + len(features) < matched
        else:
            has_next = len(features) == int(body.get("limit") or 10)
        return StacPage(features, offset + len(features) if has_next and features else None, matched)
