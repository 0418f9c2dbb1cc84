"""SpaceKnow HTTP access: Auth0 password-grant auth and one method per endpoint (all JSON POSTs).

Calls that only read (searches, status, retrieve, metadata, check-area, dry runs) are safe to repeat and are
sent `idempotent=True`, so the shared layer retries them; a Kraken release spends credits and is sent once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from geofed import errors, upstreams
from geofed.http.auth import Auth, StaticBearer, Token, TokenAuth, jwt_expiry
from geofed.http.client import UpstreamClient
from geofed.settings import Settings
from providers.spaceknow.options import SpaceKnowOptions, get_options

NAME = "spaceknow"
TITLE = "SpaceKnow"


class Auth0PasswordAuth(TokenAuth):
    """The doc's Auth0 password grant; the id_token is the bearer (valid 10 h, no refresh flow: log in again)."""

    def __init__(self, username: str, password: str, options: SpaceKnowOptions, margin: float) -> None:
        super().__init__(margin=margin)
        self.username = username
        self.password = password
        self.options = options

    async def fetch(self, client: UpstreamClient) -> Token:
        body = {
            "client_id": self.options.auth_client_id,
            "username": self.username,
            "password": self.password,
            "connection": "Username-Password-Authentication",
            "grant_type": "password",
            "scope": "openid",
        }
        auth_url = upstreams.aux_url(NAME, "auth_url")
        if not auth_url:
            raise errors.UpstreamAuthError(f"{TITLE} has no login URL configured (GEOFED_SPACEKNOW_AUTH_URL)",
                                           upstream=NAME)
        response = await client.token_request("POST", auth_url, json=body)
        payload = client.decode_json(response)
        token = payload.get("id_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise errors.UpstreamAuthError(f"{TITLE} login answered without an id_token", upstream=NAME)
        return Token(token, jwt_expiry(token) or time.time() + self.options.token_ttl)

    def secrets(self) -> list[str]:
        return [*super().secrets(), self.password]


def make_auth(settings: Settings) -> Auth:
    creds = upstreams.credentials(NAME, settings)
    if creds.get("token"):
        return StaticBearer(creds["token"])
    if not (creds.get("username") and creds.get("password")):
        raise errors.UpstreamAuthError(
            f"{TITLE} is configured without credentials (GEOFED_SPACEKNOW_USERNAME/PASSWORD or _TOKEN)", upstream=NAME
        )
    return Auth0PasswordAuth(creds["username"], creds["password"], get_options(), settings.token_refresh_margin)


class SpaceKnowClient:
    """Typed calls over the one shared `UpstreamClient` of SpaceKnow (cheap to build: no state of its own)."""

    def __init__(self, http: UpstreamClient | None = None, options: SpaceKnowOptions | None = None) -> None:
        self.http = http or upstreams.http(NAME)
        self.options = options or get_options()

    async def _post(self, endpoint: str, body: dict[str, Any], idempotent: bool = True) -> Any:
        return await self.http.post_json(self.options.path(endpoint), json=body, idempotent=idempotent)

    async def list_datasets(self) -> list[dict[str, Any]]:
        return await self._post("list_datasets", {})

    async def initiate(self, operation: str, body: dict[str, Any], idempotent: bool = True) -> dict[str, Any]:
        """`operation` is search | dry_run | release: POST `…/initiate` → {pipelineId, status, nextTry}."""
        return await self._post(f"{operation}_initiate", body, idempotent=idempotent)

    async def get_status(self, pipeline_id: str) -> dict[str, Any]:
        return await self._post("get_status", {"pipelineId": pipeline_id, "getProgress": True})

    async def retrieve(self, operation: str, pipeline_id: str) -> Any:
        return await self._post(f"{operation}_retrieve", {"pipelineId": pipeline_id})

    async def get_metadata(self, scene_id: str) -> dict[str, Any]:
        return await self._post("get_metadata", {"sceneId": scene_id})

    async def check_area(self, scene_ids: list[str], geojson: dict[str, Any]) -> dict[str, Any]:
        return await self._post("check_area", {"sceneIds": scene_ids, "geojson": geojson})

    async def list_map_types(self) -> list[dict[str, Any]]:
        return await self._post("list_map_types", {})

    @asynccontextmanager
    async def grid_file(self, map_id: str, zoom: int, x: int, y: int, file_name: str,
                        geometry_id: str = "-") -> AsyncIterator[httpx.Response]:
        """The doc's tile download: public, and it may redirect to the file in storage (`stream_following`)."""
        url = self.http.url(self.options.path("grid_file").format(
            signed_map_id=map_id, request_geometry_id=geometry_id, zoom=zoom, x=x, y=y, file_name=file_name))
        async with self.http.stream_following(url, self.options.grid_max_redirects, "a grid download") as response:
            yield response
