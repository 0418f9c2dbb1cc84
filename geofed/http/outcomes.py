"""What one upstream's calls did, recorded in one place for every call path (reads, writes, streams, token
calls): the circuit breaker, the `/healthz` record, the Prometheus metrics, and the mapping of failed answers
to `geofed.errors` (whose messages name the upstream and never carry a credential).

`/healthz` and `/metrics` agree by construction: every HTTP exchange with the upstream (each attempt of a
retried call, each token call, each stream) counts once in both — as `calls` and as
`geofed_upstream_calls_total{status=...}` — and a read answered from the cache counts in neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson

from geofed import errors
from geofed.http.breaker import CircuitBreaker
from geofed.observability import UPSTREAM_CALLS, UPSTREAM_SECONDS, health


class Outcomes:
    def __init__(self, name: str, title: str, breaker: CircuitBreaker, redact: Callable[[str], str]) -> None:
        self.name = name
        self.title = title
        self.breaker = breaker
        self.redact = redact
        self.health = health(name)
        self.health.breaker = breaker  # /healthz reads the circuit's live state, never a stale copy

    # ------------------------------------------------------------------ before and around a call
    def admit(self) -> None:
        """Raises (503) when the circuit is open: the call is not sent."""
        if not self.breaker.allow():
            raise errors.UpstreamUnavailable(
                f"{self.title} is unavailable: {self.breaker.failures} consecutive failures opened its circuit; "
                f"next try in {self.breaker.retry_in():.0f} s",
                upstream=self.name,
            )

    def release(self) -> None:
        """The call ended without a verdict (cancelled, answered from the cache): free the half-open trial."""
        self.breaker.release()

    def exchanged(self, status: int | str, started: float) -> None:
        """One HTTP exchange with the upstream happened (any outcome; not a cache hit)."""
        UPSTREAM_CALLS.labels(self.name, str(status)).inc()
        UPSTREAM_SECONDS.labels(self.name).observe(time.monotonic() - started)
        self.health.calls += 1

    # ------------------------------------------------------------------ verdicts
    def succeeded(self, status: int) -> None:
        self.breaker.success()
        self.health.ok(status)

    def failed(self, status: int | str, exc: BaseException | None = None) -> None:
        self.breaker.failure()
        self.health.failed(status, self.redact(type(exc).__name__ if exc else f"HTTP {status}"))

    def malformed(self, response: httpx.Response) -> errors.UpstreamError:
        self.health.failed(response.status_code, "malformed JSON")
        return errors.UpstreamError(
            f"{self.title} returned a malformed response (not JSON) for {response.request.url.path}",
            upstream=self.name,
        )

    def broken_stream(self, exc: BaseException) -> errors.UpstreamError:
        """A body that broke off mid-way: a failure, never to be mistaken for a shorter answer."""
        self.failed("broken-stream", exc)
        return errors.UpstreamError(f"{self.title} stream ended early", upstream=self.name)

    def transport_error(self, exc: httpx.TransportError, waited: float) -> errors.UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            self.failed("timeout", exc)
            return errors.UpstreamTimeout(f"{self.title} did not answer within {waited:.0f} s", upstream=self.name)
        self.failed("connect", exc)
        return errors.UpstreamError(f"{self.title} could not be reached ({type(exc).__name__})", upstream=self.name)

    def status_error(self, response: httpx.Response, attempts: int = 1) -> errors.UpstreamError:
        """The error for a refused call (the response's body must have been read)."""
        status = response.status_code
        detail = self.redact(error_detail(response))
        where = response.request.url.path
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if status == 429:
            self.health.failed(status, "rate limited")  # alive, only busy: no breaker failure
            self.breaker.release()
            return errors.UpstreamUnavailable(
                f"{self.title} rate-limited geofed (HTTP 429){tried}; retry later", upstream=self.name
            )
        if status >= 500:
            self.failed(status)
            if status == 504:
                return errors.UpstreamTimeout(f"{self.title} timed out (HTTP 504){tried}", upstream=self.name)
            cls = errors.UpstreamUnavailable if status == 503 else errors.UpstreamError
            return cls(f"{self.title} failed (HTTP {status}){tried}: {detail}", upstream=self.name)
        self.succeeded(status)  # a 4xx is an answer: the upstream is up
        if status in (401, 403):
            return errors.UpstreamAuthError(
                f"{self.title} refused geofed's credentials (HTTP {status}) for {where}", upstream=self.name
            )
        if status == 404:
            return errors.UpstreamNotFound(f"{self.title}: not found ({where}): {detail}", upstream=self.name)
        return errors.UpstreamRejected(f"{self.title} rejected the request (HTTP {status}): {detail}",
                                       upstream=self.name)


def error_detail(response: httpx.Response, limit: int = 300) -> str:
    """The upstream's own words about an error, from the usual JSON fields or the text body (shortened)."""
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
