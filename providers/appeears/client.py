"""AppEEARS HTTP access: login/logout, the product catalog (ETag revalidation), tasks, status, bundles.

HTTP and auth only; the mapping of what comes back lives in `records.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import httpx

from geofed import errors, upstreams
from geofed.http.auth import Token, TokenAuth, basic_header
from geofed.http.client import UpstreamClient
from geofed.query import instant
from geofed.settings import Settings

NAME = "appeears"
TITLE = "NASA AppEEARS"
TOKEN_LIFETIME = 48 * 3600.0  # the doc: "expire approximately 48 hours after being acquired"
PRODUCT_PAGE = 100  # /product page size; the doc gives no default or maximum
MAX_REDIRECTS = 3  # bundle downloads may redirect to storage (the doc's `curl --location`)
TASK_PAGE = 50  # `GET /task` page size when looking a task up by name
TASK_LOOKUP = 200  # the newest tasks searched for a submitted task whose id the answer did not give
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class AppeearsAuth(TokenAuth):
    """`POST /login` with HTTP Basic → Bearer token; AppEEARS signals an expired token with 403."""

    expired_statuses = (401, 403)

    def __init__(self, username: str, password: str, margin: float = 60.0) -> None:
        super().__init__(margin)
        self._configured = bool(username and password)
        self._password = password
        self._basic = basic_header(username, password)

    async def fetch(self, client: UpstreamClient) -> Token:
        if not self._configured:
            raise errors.UpstreamAuthError(f"{client.title}: no credentials configured", upstream=client.name)
        response = await client.token_request("POST", "/login", headers={**self._basic, "Content-Length": "0"})
        payload = client.decode_json(response)
        token = payload.get("token") if isinstance(payload, dict) else None
        if not token:
            raise errors.UpstreamAuthError(f"{client.title} answered the login without a token", upstream=client.name)
        return Token(str(token), _expiry(payload.get("expiration")))

    async def close(self, client: UpstreamClient) -> None:
        """Disposes of the token at shutdown (`POST /logout` → 204) — unless it is shared with other replicas
        (through Redis), which are still using it."""
        token, self._token = self._token, None
        if token is None or token.expires_at <= time.time() or self.shares_tokens:
            return
        await client.request("POST", "/logout", headers=self.header_for(token.value), authenticate=False,
                             idempotent=False, allow_status=(401, 403))

    def secrets(self) -> list[str]:
        return [*super().secrets(), self._password, self._basic["Authorization"].partition(" ")[2]]


def _expiry(value: Any) -> float:
    """The login's `expiration` (RFC 3339) as a timestamp; the documented lifetime when it is missing."""
    expires = instant(value)
    return expires.timestamp() if expires is not None else time.time() + TOKEN_LIFETIME


def _task_id_from(response: httpx.Response) -> str | None:
    """The task id of a submit answer: the last UUID of `Location` (`/status/{task_id}`), else the body's task_id."""
    found = _UUID.findall(response.headers.get("Location", ""))
    if found:
        return str(found[-1])
    try:
        body = json.loads(response.content) if response.content.strip() else None
    except ValueError:
        return None
    task_id = body.get("task_id") if isinstance(body, dict) else None
    return str(task_id) if task_id else None


def make_auth(settings: Settings) -> AppeearsAuth:
    creds = upstreams.credentials(NAME, settings)
    return AppeearsAuth(creds.get("username", ""), creds.get("password", ""), settings.token_refresh_margin)


@dataclass
class _Validated:
    etag: str | None
    last_modified: str | None
    body: Any
    checked: float


# Last validated body per catalog URL, kept per shared `UpstreamClient` (closing that client forgets them).
# The TTL cache (hishel) would honour AppEEARS' `max-age=0, must-revalidate` by not caching at all; here a body
# stays fresh for GEOFED_CACHE_TTL seconds and is then revalidated with If-None-Match / If-Modified-Since, so an
# unchanged catalog costs one 304.
_VALIDATED: WeakKeyDictionary[UpstreamClient, dict[str, _Validated]] = WeakKeyDictionary()


class AppeearsClient:
    def __init__(self, http: UpstreamClient | None = None) -> None:
        self.http = http or upstreams.http(NAME)
        self._validated = _VALIDATED.setdefault(self.http, {})

    # ------------------------------------------------------------------ catalog (public, revalidated)
    async def _catalog(self, path: str, params: dict[str, Any] | None = None) -> Any:
        key = str(httpx.URL(self.http.url(path), params=params or {}))
        known = self._validated.get(key)
        if known is not None and time.monotonic() - known.checked < self.http.policy.cache_ttl:
            return known.body
        headers = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        elif known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        response = await self.http.request("GET", path, params=params, headers=headers, authenticate=False,
                                           allow_status=(304,))
        if response.status_code == 304 and known is not None:
            known.checked = time.monotonic()
            return known.body
        body = self.http.decode_json(response)
        self._validated[key] = _Validated(response.headers.get("ETag"), response.headers.get("Last-Modified"), body,
                                     time.monotonic())
        return body

    async def products(self) -> list[dict[str, Any]]:
        """Every product (`GET /product`, paged by limit/offset until a short page)."""
        out: list[dict[str, Any]] = []
        while True:
            page = await self._catalog("/product", {"limit": PRODUCT_PAGE, "offset": len(out)})
            if not isinstance(page, list):
                raise errors.UpstreamError(f"{TITLE} returned a malformed product list", upstream=NAME)
            out.extend(page)
            if len(page) < PRODUCT_PAGE:
                return out

    async def layers(self, product_id: str) -> dict[str, dict[str, Any]]:
        """The layers of one product (`GET /product/{ProductAndVersion}`); NotFound when unknown."""
        try:
            body = await self._catalog(f"/product/{product_id}")
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"{TITLE} has no product '{product_id}'", upstream=NAME) from None
        if not isinstance(body, dict):
            raise errors.UpstreamError(f"{TITLE} returned malformed layers for {product_id}", upstream=NAME)
        return body

    async def projections(self) -> list[dict[str, Any]]:
        body = await self._catalog("/spatial/proj")
        return body if isinstance(body, list) else []

    # ------------------------------------------------------------------ tasks (Bearer)
    async def submit_task(self, task: dict[str, Any]) -> str:
        """`POST /task` → the new task's id. The doc: "a task_id will be returned in the HTTP Location header"
        (its sample answer is `text/html` with `Content-Length: 0`), so `Location` is read first and a JSON body
        `task_id` is the fallback. When neither can be read the task may still exist upstream: it is looked up by
        name (`GET /task`, newest first) rather than left an orphan spending the quota; only then does this fail."""
        response = await self.http.request("POST", "/task", json=task, idempotent=False)
        task_id = _task_id_from(response)
        if task_id is None:
            task_id = await self.find_task(str(task["task_name"]), str(task["task_type"]))
        if task_id is None:
            raise errors.UpstreamError(
                f"{TITLE} accepted the task '{task['task_name']}' without saying its task_id (no Location header, "
                "no task_id in the body) and no task of that name is listed", upstream=NAME)
        return task_id

    async def find_task(self, task_name: str, task_type: str) -> str | None:
        """The id of the newest task of this name and type (`GET /task` lists the newest first)."""
        for offset in range(0, TASK_LOOKUP, TASK_PAGE):
            page = await self.http.get_json("/task", params={"task_type": task_type, "limit": TASK_PAGE,
                                                             "offset": offset})
            if not isinstance(page, list):
                raise errors.UpstreamError(f"{TITLE} returned a malformed task list", upstream=NAME)
            found = next((t for t in page if isinstance(t, dict) and t.get("task_name") == task_name), None)
            if found is not None and found.get("task_id"):
                return str(found["task_id"])
            if len(page) < TASK_PAGE:
                return None
        return None

    async def task(self, task_id: str) -> dict[str, Any]:
        return await self.http.get_json(f"/task/{task_id}")

    async def status(self, task_id: str) -> tuple[int, dict[str, Any]]:
        """`GET /status/{id}` without following the 303 that means done: (HTTP status, body)."""
        response = await self.http.request("GET", f"/status/{task_id}")
        body = self.http.decode_json(response) if response.content else {}
        return response.status_code, body if isinstance(body, dict) else {}

    async def delete_task(self, task_id: str) -> bool:
        """True when deleted, False when AppEEARS no longer knows the task."""
        response = await self.http.request("DELETE", f"/task/{task_id}", allow_status=(404,))
        return response.status_code != 404

    # ------------------------------------------------------------------ bundles (public)
    async def bundle(self, task_id: str) -> dict[str, Any]:
        return await self.http.get_json(f"/bundle/{task_id}", authenticate=False)

    async def open_file(self, task_id: str, file_id: str) -> BundleFileStream:
        """Opens a bundle file for streaming; the response is open until the stream is exhausted or closed."""
        url = self.http.url(f"/bundle/{task_id}/{file_id}")
        stack = AsyncExitStack()
        try:
            response = await stack.enter_async_context(
                self.http.stream_following(url, MAX_REDIRECTS, "a bundle download"))
        except BaseException:
            await stack.aclose()
            raise
        return BundleFileStream(self.http, stack, response)


class BundleFileStream:
    """The bytes of one bundle file: an async iterator that owns the upstream response (close = release)."""

    def __init__(self, http: UpstreamClient, stack: AsyncExitStack, response: httpx.Response) -> None:
        self.http = http
        self.response = response
        self._stack = stack
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()
        self.media_type = response.headers.get("Content-Type", "application/octet-stream")
        self.filename: str | None = None
        length = response.headers.get("Content-Length")
        self.size: int | None = int(length) if length and length.isdigit() else None
        self._sha256: str | None = None
        self._digest = hashlib.sha256()
        self._read = 0

    def expect(self, sha256: str | None, size: int | None) -> None:
        """Check the bytes against the bundle's checksum: a mismatch ends the stream with an error."""
        self._sha256 = sha256.lower() if sha256 else None
        if size is not None:
            self.size = int(size)

    def __aiter__(self) -> BundleFileStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            self._verify()
            raise
        except httpx.HTTPError as exc:
            await self.aclose()
            raise self.http.stream_broken(exc) from None
        self._digest.update(chunk)
        self._read += len(chunk)
        return chunk

    def _verify(self) -> None:
        short = self.size is not None and self._read != self.size
        if short or (self._sha256 and self._digest.hexdigest() != self._sha256):
            raise self.http.stream_broken(ValueError(f"{TITLE} file failed its size/sha256 check"))

    async def aclose(self) -> None:
        await asyncio.shield(self._stack.aclose())
