"""The statuses geofed really answers, written into both faces' generated OpenAPI documents (issue 13 §4).

pygeoapi's `get_oas` and stac-fastapi document the statuses of their own code only. geofed adds its own:
the edge (`geofed.limits`: 413 for a body over `GEOFED_MAX_BODY_BYTES`; `geofed.ratelimit`: 429 when
`GEOFED_RATE_LIMIT` is set; `geofed.admission`: 503 when a request waited too long for its turn), its error
boundary (500) and upstream failures mapped by `geofed.errors` (502 refused/unreadable, 503 unavailable or circuit
open, 504 timeout) on the routes that reach an upstream.
`add_statuses` is the one patching step; `ogc()` is the OGC face's table (pygeoapi's document, patched when
`geofed.pygeoapi_config` writes it), `stac_bridge.app` holds the STAC face's. Only statuses a route can
answer are added: nothing is claimed that geofed does not send.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from geofed.settings import Settings

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BODY_METHODS = ("post", "put", "patch")
UPSTREAM = (502, 503, 504)
REASONS = {
    400: "Invalid request: the error names the parameter (a value that does not parse, a filter or geometry over "
         "the server's limits, a combination the API does not allow) or the upstream that refused the query",
    404: "Not found: the collection, item or job does not exist",
    413: "Request body larger than the server accepts (GEOFED_MAX_BODY_BYTES)",
    429: "Rate limit exceeded (GEOFED_RATE_LIMIT); retry after the seconds in Retry-After",
    500: "Unexpected error in geofed (a bug: see the server log)",
    502: "The upstream answered with an error, refused geofed's credentials, or sent what geofed cannot read",
    503: "Unavailable: geofed is busy (the request waited GEOFED_ADMISSION_WAIT for its turn; retry after the seconds "
         "in Retry-After), or the upstream is unavailable (its own 503, rate limited after retries, or geofed's "
         "circuit breaker is open)",
    504: "The upstream did not answer in time",
}
OGC_EXCEPTION = ("https://schemas.opengis.net/ogcapi/features/part1/1.0/openapi/ogcapi-features-1.yaml"
                 "#/components/schemas/exception")


@dataclass(frozen=True)
class Rule:
    """Statuses answered by the operations whose path matches `path` (a regex, whole path) and method."""

    path: str
    methods: tuple[str, ...]
    codes: tuple[int, ...]


def edge_codes(method: str, settings: Settings) -> set[int]:
    """What the middleware in front of both faces adds to every route: 413 on bodies, 429 when limited, 503 when
    admission control is on (a request that waited `GEOFED_ADMISSION_WAIT` for its turn)."""
    codes = {413} if method in BODY_METHODS else set()
    if settings.rate_limit:
        codes.add(429)
    if settings.max_active_requests > 0:
        codes.add(503)
    return codes


def add_statuses(document: dict[str, Any], rules: Iterable[Rule], settings: Settings,
                 response: Callable[[int], dict[str, Any]], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Adds to each operation the statuses its rules and the edge give it (a documented one is kept as it is)
    and removes `drop` (statuses the generator documents that geofed never answers). Returns `document`."""
    rules, drop = list(rules), list(drop)
    for path, item in (document.get("paths") or {}).items():
        for method, operation in item.items():
            if method not in METHODS or not isinstance(operation, dict):
                continue
            codes = edge_codes(method, settings)
            for rule in rules:
                if method in rule.methods and re.fullmatch(rule.path, path):
                    codes.update(rule.codes)
            responses = operation.setdefault("responses", {})
            for code in drop:
                responses.pop(code, None)
            for code in sorted(codes):
                responses.setdefault(str(code), response(code))
    return document


def error_response(code: int, schema: dict[str, Any]) -> dict[str, Any]:
    """A response object for an error status, with `Retry-After` where geofed sends it (429, 503)."""
    out: dict[str, Any] = {"description": REASONS[code], "content": {"application/json": {"schema": schema}}}
    if code in (429, 503):
        out["headers"] = {"Retry-After": {"description": "seconds until a request is allowed again",
                                          "schema": {"type": "integer"}}}
    return out


OGC_RULES = (
    Rule(r".*", METHODS, (500,)),
    Rule(r"/collections/[^/]+/items", ("get", "post"), (400, 404, *UPSTREAM)),
    Rule(r"/collections/[^/]+/items/[^/]+", ("get",), (400, 404, *UPSTREAM)),
    Rule(r"/collections/[^/]+/items/[^/]+", ("options",), (404,)),  # pygeoapi looks the item up
)


def ogc(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """pygeoapi's generated OpenAPI document with the statuses geofed adds on the OGC routes."""
    return add_statuses(document, OGC_RULES, settings, lambda code: error_response(code, {"$ref": OGC_EXCEPTION}))
