"""The one send path of an upstream call — plain reads and writes, token calls and streams alike.

Per call, in this order: circuit breaker → retries (idempotent calls only, jittered exponential backoff via
stamina, honouring `Retry-After` in the upstream's unit; a stream is retried only before its first byte) →
auth (the token is refreshed early and once for all callers; one retry after an expiry status) → the exchange
(through the TTL cache for cacheable reads; a whole read bounded by the call's timeout) →
bookkeeping in `Outcomes` (breaker, `/healthz`, metrics) and the
mapping of a refusal to a `geofed.errors.UpstreamError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import stamina
import stamina.instrumentation

from geofed.http.auth import Auth
from geofed.http.cache import from_cache
from geofed.http.outcomes import Outcomes
from geofed.http.policy import RETRYABLE_STATUSES, HttpPolicy, RetryOn, retry_after
from geofed.observability import CACHE

LOGGER = logging.getLogger("geofed.http")


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    # stamina's default hook logs at WARNING with the full call repr; ours names the retry without the URL
    # (whose query string may carry upstream parameters) and stays at INFO.
    LOGGER.info("retrying an upstream call (attempt %d, waiting %.2f s): %s",
                details.retry_num, details.wait_for, type(details.caused_by).__name__)


stamina.instrumentation.set_on_retry_hooks([_log_retry])


class Upstream(Protocol):
    """What the send path needs of an upstream client (`geofed.http.client.UpstreamClient`)."""

    name: str
    policy: HttpPolicy
    auth: Auth
    outcomes: Outcomes
    http: httpx.AsyncClient
    cached_http: httpx.AsyncClient | None


@dataclass
class Call:
    """One logical upstream call."""

    method: str
    url: str
    params: Any = None
    content: bytes | None = None
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    cache: bool = False  # may be answered from the TTL cache (GET only)
    authenticate: bool = True
    timeout: float | None = None
    allow_status: tuple[int, ...] = ()  # statuses handed back as answers instead of raised
    stream: bool = False  # the body is left unread for the caller
    guarded: bool = True  # subject to the circuit breaker (token calls made inside a guarded call are not)
    retry_on: RetryOn | None = None  # when set, the only failures retried (whatever `idempotent` says)

    def key(self) -> str:
        """Identity for coalescing identical in-flight calls."""
        params = self.params
        parts = [self.method, self.url, repr(sorted(params.items()) if isinstance(params, dict) else params),
                 repr(self.data), repr(sorted(self.headers.items()))]
        digest = hashlib.sha256("\x1f".join(parts).encode())
        if self.content:
            digest.update(self.content)
        return digest.hexdigest()


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _backoff(policy: HttpPolicy, retry_on: RetryOn | None = None) -> Any:
    def hook(exc: Exception) -> bool | float:
        if isinstance(exc, _RetryableStatus):
            wait = retry_after(exc.response, policy.retry_after_unit)
            return min(wait, policy.retry_budget) if wait is not None else True
        return retry_on.error(exc) if retry_on is not None else isinstance(exc, httpx.TransportError)

    return hook


async def _drain(response: httpx.Response) -> None:
    """Reads a refused answer's (small) body for its error message and releases the connection."""
    try:
        await response.aread()
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()


async def send(client: Upstream, call: Call) -> httpx.Response:
    """Sends `call`; returns a 2xx/3xx response or one of `call.allow_status`, else raises an `UpstreamError`.
    A streamed response comes back with its body unread (the caller closes it)."""
    outcomes, policy = client.outcomes, client.policy
    if call.guarded:
        outcomes.admit()
    attempts = max(1, policy.attempts) if call.idempotent or call.retry_on is not None else 1
    try:
        try:
            async for attempt in stamina.retry_context(
                on=_backoff(policy, call.retry_on),
                attempts=attempts,
                timeout=policy.retry_budget,
                wait_initial=policy.backoff_initial,
                wait_max=policy.backoff_max,
                wait_jitter=policy.backoff_initial,
            ):
                with attempt:
                    response = await _exchange(client, call)
                    if response.status_code not in call.allow_status and (
                            call.retry_on.response(response) if call.retry_on is not None
                            else response.status_code in RETRYABLE_STATUSES):
                        await _drain(response)
                        raise _RetryableStatus(response)
        except _RetryableStatus as exc:
            raise outcomes.status_error(exc.response, attempts=attempts) from None
        except httpx.TransportError as exc:
            waited = policy.timeout_for(call.timeout).read or policy.timeout
            raise outcomes.transport_error(exc, waited) from None
        if response.status_code >= 400 and response.status_code not in call.allow_status:
            await _drain(response)
            raise outcomes.status_error(response)
        if not from_cache(response):
            outcomes.succeeded(response.status_code)
        return response
    finally:
        if call.guarded:
            outcomes.release()  # no-op after a verdict; frees a half-open trial that ended without one


async def _exchange(client: Upstream, call: Call) -> httpx.Response:
    """One attempt: auth headers, the HTTP exchange, and one retry with a fresh token after an expiry status."""
    http = client.cached_http if call.cache and client.cached_http is not None else client.http
    for attempt in range(2):
        headers = dict(call.headers)
        if call.authenticate:
            headers.update(await client.auth.headers(client))
        request = http.build_request(
            call.method, call.url, params=call.params, content=call.content, data=call.data, headers=headers,
            timeout=client.policy.timeout_for(call.timeout),
        )
        started = time.monotonic()
        # httpx's timeouts bound each wait (connect, each read), so a body trickling in never ends a call; a
        # read's total is bounded here. A stream's body is the caller's to read, bounded by the read timeout.
        total = None if call.stream else client.policy.total(call.timeout)
        try:
            async with asyncio.timeout(total):
                response = await http.send(request, stream=call.stream)
        except TimeoutError:
            client.outcomes.exchanged("timeout", started)
            raise httpx.ReadTimeout(f"no complete answer within {total:g} s", request=request) from None
        except httpx.TransportError as exc:
            client.outcomes.exchanged("timeout" if isinstance(exc, httpx.TimeoutException) else "connect", started)
            raise
        cached = from_cache(response)
        if call.cache:
            CACHE.labels(client.name, "hit" if cached else "miss").inc()
        if not cached:
            client.outcomes.exchanged(response.status_code, started)
        expired = call.authenticate and attempt == 0 and response.status_code in client.auth.expired_statuses
        if expired and await client.auth.invalidate(headers):
            await response.aclose()
            continue
        return response
    return response
