"""Prometheus metrics and the per-upstream health state shown by `/healthz`.

`geofed.http.outcomes` updates both for every upstream call path, so they agree: `calls` in `/healthz` is the
sum of `geofed_upstream_calls_total` over statuses for that upstream.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "geofed_requests_total", "HTTP requests served", ["route", "method", "status"], registry=REGISTRY
)
REQUEST_SECONDS = Histogram(
    "geofed_request_seconds", "Latency of served requests", ["route", "method"], registry=REGISTRY
)
UPSTREAM_CALLS = Counter(
    "geofed_upstream_calls_total", "Calls to upstream APIs", ["upstream", "status"], registry=REGISTRY
)
UPSTREAM_SECONDS = Histogram(
    "geofed_upstream_seconds", "Latency of upstream calls", ["upstream"], registry=REGISTRY
)
CACHE = Counter(
    "geofed_upstream_cache_total", "Upstream read cache lookups", ["upstream", "result"], registry=REGISTRY
)
COALESCED = Counter(
    "geofed_upstream_coalesced_total",
    "Requests answered by an identical request already in flight",
    ["upstream"],
    registry=REGISTRY,
)


@dataclass
class UpstreamHealth:
    name: str
    mode: str = "disabled"
    base_url: str | None = None
    last_status: int | str | None = None
    last_ok: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    calls: int = 0  # HTTP exchanges with the upstream (what `geofed_upstream_calls_total` counts)
    breaker: Any = None  # the upstream client's `CircuitBreaker`, read live
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def circuit(self) -> str:
        return str(self.breaker.state) if self.breaker is not None else "closed"

    def ok(self, status: int) -> None:
        self.last_status = status
        self.last_ok = time.time()

    def failed(self, status: int | str, message: str) -> None:
        self.last_status = status
        self.last_error = message
        self.last_error_at = time.time()

    def as_dict(self) -> dict[str, object]:
        state = "unknown"
        circuit = self.circuit
        if self.mode == "disabled":
            state = "disabled"
        elif circuit == "open":
            state = "down"
        elif self.last_error_at and (not self.last_ok or self.last_error_at > self.last_ok):
            state = "degraded"
        elif self.last_ok:
            state = "up"
        return {
            "mode": self.mode,
            "state": state,
            "circuit": circuit,
            "calls": self.calls,
            "last_status": self.last_status,
            "last_ok": _iso(self.last_ok),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            **self.extra,
        }


HEALTH: dict[str, UpstreamHealth] = {}


def health(name: str) -> UpstreamHealth:
    if name not in HEALTH:
        HEALTH[name] = UpstreamHealth(name)
    return HEALTH[name]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


_ID_SEGMENT = re.compile(r"/(items|jobs|results|files|processes|collections)/([^/]+)")


def route_label(path: str) -> str:
    """A low-cardinality route label: identifiers after known segments become `{id}`."""
    label = _ID_SEGMENT.sub(lambda m: f"/{m.group(1)}/{{id}}", path)
    # collection ids are few and worth seeing; keep them by undoing the substitution for collections
    coll = re.match(r"(/stac)?/collections/([^/]+)", path)
    if coll:
        label = label.replace("/collections/{id}", f"/collections/{coll.group(2)}", 1)
    return label
