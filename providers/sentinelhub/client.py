"""Sentinel Hub HTTP access: OAuth2 client credentials and one method per endpoint used (HTTP and auth only).

Contract: `../shared/upstreams/sentinelhub.md`, `docs/sentinelhub-api.txt` and `observed.md` (token URL, form
grant, Retry-After in milliseconds, `/api/v1/statistics`). Every call goes through the shared `UpstreamClient`
(retries, Retry-After, token refresh, cache, breaker); methods return the upstream JSON unchanged —
`records.py` maps it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from geofed import upstreams
from geofed.http.auth import Auth, ClientCredentials
from geofed.http.client import UpstreamClient
from geofed.settings import Settings

NAME = "sentinelhub"
TITLE = "Sentinel Hub"
# Sentinel Hub's 429 answers carry Retry-After in milliseconds (observed.md), not seconds.
POLICY_OVERRIDES = {"retry_after_unit": "ms"}
CATALOG = "/api/v1/catalog/1.0.0"
STATISTICS = "/api/v1/statistics"
# Used when a token response has no `expires_in` (observed: "a JWT valid about one hour").
DEFAULT_TOKEN_TTL = 3600.0


def make_auth(settings: Settings) -> Auth:
    creds = upstreams.credentials(NAME, settings)
    client_id, secret = creds.get("client_id"), creds.get("client_secret")
    if not client_id or not secret:
        return Auth()  # no credentials configured: calls go out anonymously and the upstream's 401 says why
    # One token serves every call until shortly before it expires: the token endpoint is itself rate limited.
    return ClientCredentials(upstreams.aux_url(NAME, "token_url", settings), client_id, secret,
                             margin=settings.token_refresh_margin, default_ttl=DEFAULT_TOKEN_TTL)


class SentinelHubClient:
    """One async method per Sentinel Hub endpoint geofed uses."""

    def __init__(self, http: UpstreamClient | None = None) -> None:
        self.http = http or upstreams.http(NAME)

    # Catalog reads are cached (GEOFED_CACHE_TTL); searches are POSTs that are safe to retry.
    async def landing(self) -> dict[str, Any]:
        return await self.http.get_json(f"{CATALOG}/", cache=True)

    async def conformance(self) -> dict[str, Any]:
        return await self.http.get_json(f"{CATALOG}/conformance", cache=True)

    async def collections(self) -> dict[str, Any]:
        return await self.http.get_json(f"{CATALOG}/collections", cache=True)

    async def collection(self, collection_id: str) -> dict[str, Any]:
        return await self.http.get_json(f"{CATALOG}/collections/{quote(collection_id, safe='')}", cache=True)

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return await self.http.get_json(
            f"{CATALOG}/collections/{quote(collection_id, safe='')}/queryables", cache=True
        )

    async def items(self, collection_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.http.get_json(
            f"{CATALOG}/collections/{quote(collection_id, safe='')}/items", params=params, cache=True
        )

    async def item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        return await self.http.get_json(
            f"{CATALOG}/collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}", cache=True
        )

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /search (one collection, `datetime` required upstream; see `catalog.SearchRequest`)."""
        return await self.http.post_json(f"{CATALOG}/search", json=body, idempotent=True)

    async def search_get(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.http.get_json(f"{CATALOG}/search", params=params, cache=True)

    async def statistics(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST /api/v1/statistics: a read-only computation, so retrying it is safe."""
        return await self.http.post_json(STATISTICS, json=request, idempotent=True, timeout=120)
