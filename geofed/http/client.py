"""`UpstreamClient`: HTTP access to one upstream, written once for every upstream.

It holds one pooled `httpx.AsyncClient` per upstream (plus one through the TTL cache) and adds coalescing of
identical in-flight idempotent requests; everything else — breaker, retries, auth, error mapping,
`/healthz` and metrics — is the one send path in `geofed.http.send`, which streams share. Pass
`transport=` (e.g. `httpx.ASGITransport(app=simulator)`) to talk to an in-process app: the test seam httpx
itself offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import hishel
import httpx
import orjson

from geofed import errors
from geofed.http.auth import Auth
from geofed.http.breaker import CircuitBreaker
from geofed.http.cache import FRESH, cached_client
from geofed.http.outcomes import Outcomes
from geofed.http.policy import IDEMPOTENT_METHODS, HttpPolicy, RetryOn
from geofed.http.send import Call, send
from geofed.observability import COALESCED

__all__ = ["HttpPolicy", "RetryOn", "UpstreamClient"]


class UpstreamClient:
    """HTTP access to one upstream. Thread-affine to the upstream loop (see `geofed.http.loop`)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        title: str | None = None,
        auth: Auth | None = None,
        policy: HttpPolicy | None = None,
        cache_storage: hishel.AsyncBaseStorage | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.title = title or name
        self.base_url = base_url.rstrip("/")
        self.auth = auth or Auth()
        self.policy = policy or HttpPolicy()
        self.breaker = CircuitBreaker(self.policy.breaker_failures, self.policy.breaker_reset)
        self.outcomes = Outcomes(name, self.title, self.breaker, self.redact)
        self.health = self.outcomes.health
        self._inflight: dict[str, asyncio.Future[httpx.Response]] = {}
        if transport is None:
            limits = httpx.Limits(max_connections=self.policy.max_connections, max_keepalive_connections=20,
                                  keepalive_expiry=self.policy.keepalive_expiry)
            transport = httpx.AsyncHTTPTransport(limits=limits)
        common: dict[str, Any] = {
            "timeout": self.policy.timeout_for(None),
            "headers": {"User-Agent": "geofed", **(headers or {})},
        }
        self.http = httpx.AsyncClient(transport=transport, **common)
        self.cached_http: httpx.AsyncClient | None = None
        if self.policy.cache_ttl > 0:
            self.cached_http = cached_client(name, transport, self.policy.cache_ttl, cache_storage, **common)

    # ------------------------------------------------------------------ calls
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _call(
        self, method: str, path: str, *, params: Any, json: Any, data: Any, headers: Mapping[str, str] | None,
        idempotent: bool | None, **options: Any,
    ) -> Call:
        method = method.upper()
        hdrs = dict(headers or {})
        if json is not None:
            hdrs.setdefault("Content-Type", "application/json")
        return Call(
            method, self.url(path), params=params, content=orjson.dumps(json) if json is not None else None,
            data=data, headers=hdrs, idempotent=method in IDEMPOTENT_METHODS if idempotent is None else idempotent,
            **options,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        cache: bool = False,
        authenticate: bool = True,
        coalesce: bool | None = None,
        timeout: float | None = None,
        allow_status: tuple[int, ...] = (),
        guarded: bool = True,
        retry_on: RetryOn | None = None,
    ) -> httpx.Response:
        """Sends one logical call and returns the fully read response (2xx/3xx or an allowed status).

        `idempotent` defaults from the method (POST is not); only idempotent calls are retried and coalesced.
        `cache=True` serves GETs from the TTL cache (use it for catalog reads, never for status polls).
        `retry_on` (a `RetryOn`) replaces that rule for one call: only the failures it names are retried (for
        calls that spend units but may be re-sent where the upstream said it did not process them).
        """
        call = self._call(
            method, path, params=params, json=json, data=data, headers=headers, idempotent=idempotent,
            cache=cache and method.upper() == "GET" and not FRESH.get(), authenticate=authenticate, timeout=timeout,
            allow_status=allow_status, guarded=guarded, retry_on=retry_on,
        )
        if not (call.idempotent if coalesce is None else coalesce):
            return await send(self, call)
        key = call.key()
        task = self._inflight.get(key)
        if task is not None:
            COALESCED.labels(self.name).inc()
        else:
            # The call runs as its own task, owned by no caller: a caller that goes away (client disconnect)
            # cancels only its own wait, never the answer the other callers are waiting for.
            task = asyncio.ensure_future(send(self, call))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Future[httpx.Response]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: an error nobody waited for is not "never retrieved"

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.decode_json(await self.request("GET", path, **kwargs))

    async def post_json(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.decode_json(await self.request("POST", path, json=json, **kwargs))

    def decode_json(self, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self.outcomes.malformed(response) from None

    async def token_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """For auth strategies: a call without auth whose refusal means *our* credentials are wrong. It is not
        held back by the breaker: it runs inside a call the breaker already let through."""
        try:
            return await self.request(method, url, authenticate=False, idempotent=True, coalesce=False,
                                      guarded=False, **kwargs)
        except errors.UpstreamRejected as exc:
            raise errors.UpstreamAuthError(
                f"{self.title} refused geofed's credentials: {exc.message}", upstream=self.name
            ) from None

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        authenticate: bool = True,
        idempotent: bool | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Opens a streamed response (status already checked) through the same send path as `request()`:
        retried before the first byte like any call, counted in `/healthz` and `/metrics`.

        Errors while reading the body surface as `httpx` exceptions; use `stream_broken()` to map them.
        `authenticate=False` for public downloads (no token may follow a redirect to another host).
        """
        call = self._call(method, path, params=params, json=json, data=None, headers=headers,
                          idempotent=idempotent, authenticate=authenticate, timeout=timeout, stream=True)
        response = await send(self, call)
        try:
            yield response
        finally:
            await response.aclose()

    @asynccontextmanager
    async def stream_following(self, url: str, max_redirects: int, what: str) -> AsyncIterator[httpx.Response]:
        """A public download (no token sent, so none can follow a redirect to storage on another host) that may
        redirect: each hop is its own `stream()` call, and only the final answer is yielded — a 3xx body is never
        streamed as if it were the file. More than `max_redirects` hops is a 502 naming the upstream."""
        for _hop in range(max_redirects + 1):
            async with self.stream("GET", url, authenticate=False) as response:
                if not response.is_redirect:
                    yield response
                    return
                url = str(response.url.join(response.headers["Location"]))
        raise errors.UpstreamError(f"{self.title} redirected {what} more than {max_redirects} times",
                                   upstream=self.name)

    def stream_broken(self, exc: BaseException) -> errors.UpstreamError:
        """The error for a body that broke off mid-way: never to be mistaken for a shorter answer."""
        return self.outcomes.broken_stream(exc)

    async def aclose(self) -> None:
        try:
            await self.auth.close(self)
        except Exception:  # noqa: BLE001 - a failed logout must not keep the server from stopping
            pass
        await self.http.aclose()
        if self.cached_http is not None:
            await self.cached_http.aclose()

    def redact(self, text: str) -> str:
        for secret in self.auth.secrets():
            if secret:
                text = text.replace(secret, "********")
        return text
