"""The upstream HTTP layer, written once for all five upstream clients.

`UpstreamClient` wraps one pooled `httpx.AsyncClient` per upstream and adds, in this order per call:
coalescing of identical in-flight idempotent requests → circuit breaker → retries (idempotent calls only,
jittered exponential backoff via stamina, honouring `Retry-After` in the upstream's unit) → auth (token
refreshed early and once for all callers; one retry after an expiry status) → TTL cache for reads (hishel).
Every failure leaves as a `geofed.errors.UpstreamError` subclass whose message names the upstream and
carries no credential.
"""

from __future__ import annotations

import asyncio
import atexit
import email.utils
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import hishel
import httpx
import orjson
import stamina
import stamina.instrumentation
from hishel.httpx import AsyncCacheTransport

from geofed import errors
from geofed.http.auth import Auth
from geofed.http.breaker import CircuitBreaker
from geofed.observability import CACHE, COALESCED, UPSTREAM_CALLS, UPSTREAM_SECONDS, health

LOGGER = logging.getLogger("geofed.http")


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    # stamina's default hook logs at WARNING with the full call repr; ours names the retry without the URL
    # (whose query string may carry upstream parameters) and stays at INFO.
    LOGGER.info("retrying an upstream call (attempt %d, waiting %.2f s): %s",
                details.retry_num, details.wait_for, type(details.caused_by).__name__)


stamina.instrumentation.set_on_retry_hooks([_log_retry])

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class HttpPolicy:
    timeout: float = 30.0
    connect_timeout: float = 5.0
    attempts: int = 4
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    retry_budget: float = 30.0
    cache_ttl: float = 60.0
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    # Unit of numeric Retry-After values: CarbonMapper sends seconds, Sentinel Hub milliseconds.
    retry_after_unit: Literal["s", "ms"] = "s"
    max_connections: int = 50


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


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
    ) -> None:
        self.name = name
        self.title = title or name
        self.base_url = base_url.rstrip("/")
        self.auth = auth or Auth()
        self.policy = policy or HttpPolicy()
        self.breaker = CircuitBreaker(self.policy.breaker_failures, self.policy.breaker_reset)
        self.health = health(name)
        self._inflight: dict[str, asyncio.Future[httpx.Response]] = {}
        timeout = httpx.Timeout(self.policy.timeout, connect=self.policy.connect_timeout)
        limits = httpx.Limits(max_connections=self.policy.max_connections, max_keepalive_connections=20)
        self._transport = httpx.AsyncHTTPTransport(limits=limits)
        common: dict[str, Any] = {"timeout": timeout, "headers": {"User-Agent": "geofed", **(headers or {})}}
        self.http = httpx.AsyncClient(transport=self._transport, **common)
        self._cached_http: httpx.AsyncClient | None = None
        if self.policy.cache_ttl > 0:
            storage = cache_storage or hishel.AsyncSqliteStorage(
                database_path=_private_cache_path(name), default_ttl=self.policy.cache_ttl
            )
            self._cached_http = httpx.AsyncClient(
                transport=AsyncCacheTransport(next_transport=self._transport, storage=storage), **common
            )

    # ------------------------------------------------------------------ public API
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

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
    ) -> httpx.Response:
        """Sends one logical call and returns the fully read response (2xx/3xx or an allowed status).

        `idempotent` defaults from the method (POST is not); only idempotent calls are retried and coalesced.
        `cache=True` serves GETs from the TTL cache (use it for catalog reads, never for status polls).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        coalesce = idempotent if coalesce is None else coalesce
        url = self.url(path)
        body = orjson.dumps(json) if json is not None else None
        call = dict(
            method=method, url=url, params=params, content=body, data=data, headers=dict(headers or {}),
            idempotent=idempotent, cache=cache and method == "GET", authenticate=authenticate,
            timeout=timeout, allow_status=allow_status, is_json=json is not None,
        )
        if not coalesce:
            return await self._call(**call)
        key = self._coalesce_key(method, url, params, body, data, headers)
        task = self._inflight.get(key)
        if task is not None:
            COALESCED.labels(self.name).inc()
        else:
            # The call runs as its own task, owned by no caller: a caller that goes away (client disconnect)
            # cancels only its own wait, never the answer the other callers are waiting for.
            task = asyncio.ensure_future(self._call(**call))
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
            self.health.failed(response.status_code, "malformed JSON")
            raise errors.UpstreamError(
                f"{self.title} returned a malformed response (not JSON) for {response.request.url.path}",
                upstream=self.name,
            ) from None

    async def token_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """For auth strategies: a call without auth whose refusal means *our* credentials are wrong."""
        try:
            return await self.request(method, url, authenticate=False, idempotent=True, coalesce=False, **kwargs)
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
    ) -> AsyncIterator[httpx.Response]:
        """Opens a streamed response (status already checked). Retries happen only before the first byte.

        Errors while reading the body surface as `httpx` exceptions; use `stream_broken()` to map them.
        `authenticate=False` for public downloads (no token may follow a redirect to another host).
        """
        url = self.url(path)
        body = orjson.dumps(json) if json is not None else None
        self._check_breaker()
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            used = {**hdrs, **(await self.auth.headers(self))} if authenticate else dict(hdrs)
            request = self.http.build_request(
                method, url, params=params, content=body, headers=used, timeout=self._timeout(timeout)
            )
            started = time.monotonic()
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                self._record_failure("timeout", exc)
                raise errors.UpstreamTimeout(f"{self.title} did not answer in time", upstream=self.name) from None
            except httpx.TransportError as exc:
                self._record_failure("connect", exc)
                raise errors.UpstreamError(
                    f"{self.title} could not be reached ({type(exc).__name__})", upstream=self.name
                ) from None
            self._observe(response, started)
            if authenticate and response.status_code in self.auth.expired_statuses and attempt == 0:
                if await self.auth.invalidate(used):
                    await response.aclose()
                    continue
                # no fresher token to try (a static one): fall through and report the refusal (not a 500)
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                raise self._status_error(response)
            try:
                yield response
            except GeneratorExit:
                # The caller stopped reading early (it had what it needed): the upstream answered, which must
                # count as a success, or a half-open circuit would wait forever for its trial call's outcome.
                self.breaker.success()
                raise
            finally:
                await response.aclose()
            self.breaker.success()
            return

    def stream_broken(self, exc: BaseException) -> errors.UpstreamError:
        """The error for a body that broke off mid-way: never to be mistaken for a shorter answer."""
        self._record_failure("broken-stream", exc)
        return errors.UpstreamError(f"{self.title} stream ended early", upstream=self.name)

    async def aclose(self) -> None:
        try:
            await self.auth.close(self)
        except Exception:
            pass
        await self.http.aclose()
        if self._cached_http is not None:
            await self._cached_http.aclose()

    def redact(self, text: str) -> str:
        for secret in self.auth.secrets():
            if secret:
                text = text.replace(secret, "********")
        return text

    # ------------------------------------------------------------------ internals
    def _timeout(self, timeout: float | None) -> httpx.Timeout:
        total = timeout if timeout is not None else self.policy.timeout
        return httpx.Timeout(total, connect=min(total, self.policy.connect_timeout))

    @staticmethod
    def _coalesce_key(method: str, url: str, params: Any, body: bytes | None, data: Any, headers: Any) -> str:
        parts = [method, url, repr(sorted(params.items()) if isinstance(params, dict) else params), repr(data)]
        parts.append(repr(sorted((headers or {}).items())))
        digest = hashlib.sha256("\x1f".join(parts).encode())
        if body:
            digest.update(body)
        return digest.hexdigest()

    def _check_breaker(self) -> None:
        if not self.breaker.allow():
            self.health.circuit = "open"
            raise errors.UpstreamUnavailable(
                f"{self.title} is unavailable: {self.breaker.failures} consecutive failures opened its circuit; "
                f"next try in {self.breaker.retry_in():.0f} s",
                upstream=self.name,
            )

    def _record_failure(self, status: int | str, exc: BaseException | None = None) -> None:
        self.breaker.failure()
        self.health.circuit = self.breaker.state
        self.health.failed(status, self.redact(f"{type(exc).__name__}" if exc else f"HTTP {status}"))

    def _observe(self, response: httpx.Response, started: float) -> None:
        UPSTREAM_CALLS.labels(self.name, str(response.status_code)).inc()
        UPSTREAM_SECONDS.labels(self.name).observe(time.monotonic() - started)

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            return max(0.0, parsed.timestamp() - time.time()) if parsed else None
        return number / 1000.0 if self.policy.retry_after_unit == "ms" else number

    def _backoff_hook(self, exc: Exception) -> bool | float:
        if isinstance(exc, _RetryableStatus):
            wait = self._retry_after(exc.response)
            if wait is not None:
                return min(wait, self.policy.retry_budget)
            return True
        return isinstance(exc, httpx.TransportError)

    async def _call(
        self,
        *,
        method: str,
        url: str,
        params: Any,
        content: bytes | None,
        data: Any,
        headers: dict[str, str],
        idempotent: bool,
        cache: bool,
        authenticate: bool,
        timeout: float | None,
        allow_status: tuple[int, ...],
        is_json: bool,
    ) -> httpx.Response:
        self._check_breaker()
        if is_json:
            headers.setdefault("Content-Type", "application/json")
        attempts = max(1, self.policy.attempts) if idempotent else 1
        try:
            async for attempt in stamina.retry_context(
                on=self._backoff_hook,
                attempts=attempts,
                timeout=self.policy.retry_budget,
                wait_initial=self.policy.backoff_initial,
                wait_max=self.policy.backoff_max,
                wait_jitter=self.policy.backoff_initial,
            ):
                with attempt:
                    response = await self._send(
                        method, url, params, content, data, headers, cache, authenticate, timeout
                    )
                    if response.status_code in RETRYABLE_STATUSES and response.status_code not in allow_status:
                        raise _RetryableStatus(response)
        except _RetryableStatus as exc:
            raise self._status_error(exc.response, attempts=attempts) from None
        except httpx.TimeoutException as exc:
            self._record_failure("timeout", exc)
            raise errors.UpstreamTimeout(
                f"{self.title} did not answer within {self._timeout(timeout).read or self.policy.timeout:.0f} s",
                upstream=self.name,
            ) from None
        except httpx.TransportError as exc:
            self._record_failure("connect", exc)
            raise errors.UpstreamError(
                f"{self.title} could not be reached ({type(exc).__name__})", upstream=self.name
            ) from None
        if response.status_code >= 400 and response.status_code not in allow_status:
            raise self._status_error(response)
        self.breaker.success()
        self.health.circuit = "closed"
        self.health.ok(response.status_code)
        return response

    async def _send(
        self,
        method: str,
        url: str,
        params: Any,
        content: bytes | None,
        data: Any,
        headers: dict[str, str],
        cache: bool,
        authenticate: bool,
        timeout: float | None,
    ) -> httpx.Response:
        http = self._cached_http if cache and self._cached_http is not None else self.http
        for attempt in range(2):
            used = dict(headers)
            if authenticate:
                used.update(await self.auth.headers(self))
            started = time.monotonic()
            response = await http.request(
                method, url, params=params, content=content, data=data, headers=used,
                timeout=self._timeout(timeout),
            )
            caching = response.extensions.get("caching")
            if cache and caching is not None:
                CACHE.labels(self.name, "hit" if caching.get("from_cache") else "miss").inc()
            if not (caching and caching.get("from_cache")):
                self._observe(response, started)
            if authenticate and attempt == 0 and response.status_code in self.auth.expired_statuses:
                if await self.auth.invalidate(used):
                    continue
            return response
        return response

    def _status_error(self, response: httpx.Response, attempts: int = 1) -> errors.UpstreamError:
        status = response.status_code
        detail = self.redact(_error_detail(response))
        where = response.request.url.path
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if status == 429:
            self.health.failed(status, "rate limited")
            return errors.UpstreamUnavailable(
                f"{self.title} rate-limited geofed (HTTP 429){tried}; retry later", upstream=self.name
            )
        if status >= 500:
            self._record_failure(status)
            if status == 504:
                return errors.UpstreamTimeout(f"{self.title} timed out (HTTP 504){tried}", upstream=self.name)
            cls = errors.UpstreamUnavailable if status == 503 else errors.UpstreamError
            return cls(f"{self.title} failed (HTTP {status}){tried}: {detail}", upstream=self.name)
        self.health.ok(status)  # a 4xx is an answer: the upstream is up
        if status in (401, 403):
            return errors.UpstreamAuthError(
                f"{self.title} refused geofed's credentials (HTTP {status}) for {where}", upstream=self.name
            )
        if status == 404:
            return errors.UpstreamNotFound(f"{self.title}: not found ({where}): {detail}", upstream=self.name)
        return errors.UpstreamRejected(f"{self.title} rejected the request (HTTP {status}): {detail}",
                                       upstream=self.name)


_cache_dir: Path | None = None


def _private_cache_path(name: str) -> Path:
    """A cache file private to this client and process.

    hishel's SQLite storage has no in-memory mode (":memory:" becomes a *file* of that name under
    `.cache/hishel`, shared by every client and process: "database is locked" under load), so each client gets
    its own file in a per-process temporary directory, removed at exit. Shared caching is what
    `GEOFED_REDIS_URL` is for.
    """
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix=f"geofed-cache-{os.getpid()}-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.sqlite"


def _error_detail(response: httpx.Response, limit: int = 300) -> str:
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:limit].strip() or response.reason_phrase
    if isinstance(payload, dict):
        for key in ("detail", "message", "error_description", "error", "description", "errors"):
            if payload.get(key):
                value = payload[key]
                if isinstance(value, dict):
                    value = value.get("message") or value.get("description") or value
                return str(value)[:limit]
    return str(payload)[:limit]
