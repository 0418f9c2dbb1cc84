"""HTTP and auth of the example upstream."""

from __future__ import annotations

from typing import Any

from geofed import upstreams
from geofed.http.auth import Auth

NAME = "stations"
TITLE = "Example stations"


class ApiKey(Auth):
    def __init__(self, key: str) -> None:
        self.key = key

    async def headers(self, client: Any) -> dict[str, str]:
        return {"X-Api-Key": self.key}

    def secrets(self) -> list[str]:
        return [self.key]


def make_auth(settings: Any) -> Auth:
    return ApiKey(upstreams.credentials(NAME, settings)["api_key"])


class StationsClient:
    async def search(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        return await upstreams.http(NAME).get_json("/stations", params=params, cache=True)

    async def station(self, station_id: str) -> dict[str, Any]:
        return await upstreams.http(NAME).get_json(f"/stations/{station_id}", cache=True)
