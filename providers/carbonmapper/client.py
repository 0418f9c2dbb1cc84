"""CarbonMapper HTTP access and auth: the REST catalog and the STAC API (`/api/v1/stac/`).

Encoding (observed.md): the REST catalog takes `bbox` as four repeated keys and arrays as repeated keys, so
its parameters travel as a list of pairs; the STAC API takes `bbox` comma-joined (GET) or as a number array
(POST), `offset` as a query parameter even for POST, and `intersects` as a GeoJSON *string*.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import pystac

from geofed import errors
from geofed.http.auth import Auth, StaticBearer, Token, TokenAuth
from geofed.http.client import UpstreamClient
from geofed.settings import Settings
from geofed.upstreams import credentials, http

NAME = "carbonmapper"
TITLE = "CarbonMapper"
MAX_LIMIT = 1000  # per upstream call ("limit: default is 500, max is 1000")
# Access-token lifetime when the token is not a JWT with an `exp` claim (the doc gives no lifetime).
DEFAULT_ACCESS_TTL = 300.0

Params = list[tuple[str, str]]


def _jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it (we only need to know when to refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


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
        expires = _jwt_expiry(access) or time.time() + DEFAULT_ACCESS_TTL
        return Token(access, expires)

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
    return [("bbox", repr(float(v))) for v in bbox]


class CatalogClient:
    """The REST catalog endpoints geofed reads (all OptionalAuth, cached reads)."""

    def __init__(self) -> None:
        self.http = http(NAME)

    async def plumes(self, params: Params) -> dict[str, Any]:
        return await self.http.get_json("/api/v1/catalog/plumes/annotated", params=params, cache=True)

    async def plume(self, name: str) -> dict[str, Any]:
        return await self.http.get_json(f"/api/v1/catalog/plume/{quote(name, safe='')}", cache=True)

    async def sources(self, params: Params) -> dict[str, Any]:
        return await self.http.get_json("/api/v1/catalog/sources.geojson", params=params, cache=True)

    async def source(self, name: str) -> dict[str, Any]:
        return await self.http.get_json(f"/api/v1/catalog/source/{quote(name, safe='')}", cache=True)

    async def source_of_plume(self, plume_name: str) -> dict[str, Any]:
        return await self.http.get_json(
            f"/api/v1/catalog/source/plume/name/{quote(plume_name, safe='')}", cache=True
        )

    async def scenes(self, params: Params) -> dict[str, Any]:
        return await self.http.get_json("/api/v1/catalog/scenes/annotated", params=params, cache=True)


@dataclass
class StacPage:
    items: list[pystac.Item]
    next_offset: int | None
    matched: int | None


class StacClient:
    """The CarbonMapper STAC API, returning pystac objects."""

    root = "/api/v1/stac"

    def __init__(self) -> None:
        self.http = http(NAME)

    async def landing(self) -> pystac.Catalog:
        return pystac.Catalog.from_dict(await self.http.get_json(f"{self.root}/", cache=True))

    async def conformance(self) -> list[str]:
        body = await self.http.get_json(f"{self.root}/conformance", cache=True)
        return list(body.get("conformsTo") or []) if isinstance(body, dict) else []

    async def collections(self) -> list[pystac.Collection]:
        body = await self.http.get_json(f"{self.root}/collections", cache=True)
        return [pystac.Collection.from_dict(c) for c in _field(body, "collections")]

    async def collection(self, collection_id: str) -> pystac.Collection:
        body = await self.http.get_json(f"{self.root}/collections/{quote(collection_id, safe='')}", cache=True)
        return pystac.Collection.from_dict(body)

    async def item(self, collection_id: str, item_id: str) -> pystac.Item:
        path = f"{self.root}/collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}"
        return pystac.Item.from_dict(await self.http.get_json(path, cache=True), preserve_dict=False, migrate=False)

    async def search(self, body: dict[str, Any], offset: int = 0) -> StacPage:
        """POST /search (idempotent: a read). `offset` goes in the query string, as the doc has it."""
        payload = await self.http.post_json(
            f"{self.root}/search", json=body, params={"offset": offset}, idempotent=True
        )
        features = _field(payload, "features")
        items = [pystac.Item.from_dict(f, preserve_dict=False, migrate=False) for f in features]
        context = payload.get("context") or {}
        matched = context.get("matched", payload.get("numberMatched"))
        has_next = any(link.get("rel") == "next" for link in payload.get("links") or [])
        limit = int(body.get("limit") or 10)
        if not payload.get("links") and matched is not None:
            has_next = offset + len(features) < int(matched)
        elif not payload.get("links"):
            has_next = len(features) == limit
        return StacPage(items, offset + len(features) if has_next and features else None,
                        int(matched) if matched is not None else None)


def _field(body: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise errors.UpstreamError(f"{TITLE} returned a malformed response (no '{name}' list)", upstream=NAME)
    return body[name]
