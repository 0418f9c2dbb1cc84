"""How geofed talks to one upstream: timeouts, retries, cache, breaker thresholds (`HttpPolicy`), and which
answers are worth another try (`RETRYABLE_STATUSES`, `retry_after`)."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Literal

import httpx

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryOn:
    """Per call: the only failures after which a call is sent again (instead of the idempotence rule). For calls
    that must not run twice (they spend the user's units) but may be retried where the upstream said the request
    was not processed: e.g. `RetryOn(frozenset({429, 503}), needs_retry_after=True)`. A connection that was never
    established sent nothing, so `connect_errors` is safe; other transport errors (a read timeout) are not."""

    statuses: frozenset[int] = frozenset({429, 503})
    needs_retry_after: bool = True  # retry a status only when it came with a Retry-After header
    connect_errors: bool = True

    def response(self, response: httpx.Response) -> bool:
        return response.status_code in self.statuses and (
            not self.needs_retry_after or "Retry-After" in response.headers)

    def error(self, exc: BaseException) -> bool:
        return self.connect_errors and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


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
    # Seconds an idle pooled connection is reused. Below the upstreams' own idle timeout (uvicorn, Node and Apache
    # close after 5 s, gunicorn after 2 s): a request written as the upstream closes the connection fails with a
    # ReadError, and a POST cannot be sent again safely.
    keepalive_expiry: float = 1.5

    def total(self, timeout: float | None) -> float:
        """Seconds one call may take (`timeout` overrides the policy's total for slow endpoints)."""
        return timeout if timeout is not None else self.timeout

    def timeout_for(self, timeout: float | None) -> httpx.Timeout:
        """The httpx timeout of one call: each wait bounded by its total."""
        total = self.total(timeout)
        return httpx.Timeout(total, connect=min(total, self.connect_timeout))


def retry_after(response: httpx.Response, unit: Literal["s", "ms"] = "s") -> float | None:
    """Seconds the upstream asks us to wait (`Retry-After` as a number in `unit`, or an HTTP date); None if absent."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
    return number / 1000.0 if unit == "ms" else number
