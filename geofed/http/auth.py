"""Auth strategies, one per upstream flavour, sharing the refresh discipline.

`TokenAuth` keeps one token per upstream, refreshes it `margin` seconds before it expires, lets exactly one
caller refresh while concurrent callers wait for that refresh, and drops the token when the upstream says it
expired (the client then retries the call once). Subclasses implement `fetch()` only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from geofed import errors

if TYPE_CHECKING:
    from geofed.http.client import UpstreamClient


@dataclass
class Token:
    value: str
    expires_at: float  # epoch seconds; float("inf") for tokens without a known expiry


class Auth:
    """No authentication (anonymous reads)."""

    #: upstream statuses that mean "your token expired": the call is retried once with a fresh token
    expired_statuses: tuple[int, ...] = (401,)

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        return {}

    async def invalidate(self, used_headers: dict[str, str]) -> bool:
        """Forget the token these headers carried; True when a retry with a new token makes sense."""
        return False

    def secrets(self) -> list[str]:
        """Strings that must never appear in logs, errors or links (redacted wherever text leaves geofed)."""
        return []

    async def close(self, client: UpstreamClient) -> None:
        """Called at shutdown (e.g. to log out)."""


class StaticBearer(Auth):
    """A token configured as is (`GEOFED_<UPSTREAM>_TOKEN`): no refresh possible."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def secrets(self) -> list[str]:
        return [self.token]


class TokenAuth(Auth):
    """Base for token flows: single-flight refresh, early refresh, invalidate-on-expiry."""

    def __init__(self, margin: float = 60.0) -> None:
        self.margin = margin
        self._token: Token | None = None
        self._lock: asyncio.Lock | None = None
        self.refreshes = 0

    async def fetch(self, client: UpstreamClient) -> Token:  # pragma: no cover - abstract
        raise NotImplementedError

    def header_for(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _fresh(self) -> bool:
        token = self._token
        return token is not None and token.expires_at - self.margin > time.time()

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        if not self._fresh():
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._fresh():  # another caller may have refreshed while we waited
                    self._token = await self.fetch(client)
                    self.refreshes += 1
        assert self._token is not None
        return self.header_for(self._token.value)

    async def invalidate(self, used_headers: dict[str, str]) -> bool:
        token = self._token
        if token is not None and self.header_for(token.value) == {
            k: v for k, v in used_headers.items() if k in self.header_for(token.value)
        }:
            self._token = None
        return True

    def secrets(self) -> list[str]:
        return [self._token.value] if self._token else []


def basic_header(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def expiry_from(payload: dict[str, object], default_ttl: float) -> float:
    """Absolute expiry from a token response: `expires_in` seconds, else `default_ttl`."""
    expires_in = payload.get("expires_in")
    try:
        ttl = float(expires_in) if expires_in is not None else default_ttl  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ttl = default_ttl
    return time.time() + ttl


class ClientCredentials(TokenAuth):
    """OAuth2 client-credentials grant (RFC 6749 §4.4): form POST to the token URL, `expires_in` from the answer."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, margin: float = 60.0,
                 default_ttl: float = 3600.0) -> None:
        super().__init__(margin)
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.default_ttl = default_ttl

    async def fetch(self, client: UpstreamClient) -> Token:
        response = await client.token_request(
            "POST",
            self.token_url,
            data={"grant_type": "client_credentials", "client_id": self.client_id,
                  "client_secret": self.client_secret},
        )
        payload = client.decode_json(response)
        if not isinstance(payload, dict) or not payload.get("access_token"):
            raise errors.UpstreamError(f"{client.title}'s token endpoint answered without an access_token",
                                       upstream=client.name)
        return Token(str(payload["access_token"]), expiry_from(payload, self.default_ttl))

    def secrets(self) -> list[str]:
        return [*super().secrets(), self.client_secret]
