"""Request parsing, validation errors, rate limiting and rendering shared by the REST and STAC routes.

Validation errors look like the service's framework (Django Ninja): HTTP 422 with
`{"detail": [{"type", "loc": ["query", name], "msg"}]}`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulators.carbonmapper.data import iso
from simulators.framework import SimulatorState, service_root


class Invalid(Exception):
    def __init__(self, name: str, msg: str, where: str = "query") -> None:
        super().__init__(msg)
        self.name, self.msg, self.where = name, msg, where

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": [{"type": "value_error", "loc": [self.where, self.name], "msg": self.msg}]},
                            status_code=422)


def not_found(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"{what} not found"}, status_code=404)


# ----------------------------------------------------------------- query parsing
def enum_list(request: Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    values = request.query_params.getlist(name)
    for v in values:
        if v not in allowed:
            raise Invalid(name, f"Input should be {', '.join(repr(a) for a in allowed)}")
    return values


def enum_one(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    values = enum_list(request, name, allowed)
    return values[-1] if values else None


def integer(request: Request, name: str, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(name, "Input should be a valid integer, unable to parse string as an integer") from None
    if minimum is not None and value < minimum:
        raise Invalid(name, f"Input should be greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise Invalid(name, f"Input should be less than or equal to {maximum}")
    return value


def boolean(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise Invalid(name, "Input should be a valid boolean")


def parse_instant(text: str, name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Invalid(name, f"invalid RFC 3339 date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def interval(raw: str | None, name: str) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """RFC 3339 instant or interval (`a/b`, `a/..`, `../b`); None when absent."""
    if raw is None or raw == "":
        return None
    if "/" not in raw:
        t = parse_instant(raw, name)
        return t, t
    left, _, right = raw.partition("/")
    start = None if left in ("", "..") else parse_instant(left, name)
    end = None if right in ("", "..") else parse_instant(right, name)
    if start and end and start > end:
        raise Invalid(name, "interval start is after its end")
    return start, end


def in_interval(value: dt.datetime, window: tuple[dt.datetime | None, dt.datetime | None] | None) -> bool:
    if window is None:
        return True
    start, end = window
    return (start is None or value >= start) and (end is None or value <= end)


def check_bbox(nums: list[float], name: str = "bbox") -> list[float]:
    if len(nums) != 4:
        raise Invalid(name, f"bbox must have 4 items, got {len(nums)}")
    if nums[1] > nums[3] or nums[0] > nums[2]:
        raise Invalid(name, "bbox minimum is greater than its maximum")
    return nums


def rest_bbox(request: Request) -> list[float] | None:
    """REST catalog bbox: four repeated keys `bbox=W&bbox=S&bbox=E&bbox=N`; one comma-joined value → 422."""
    raw = request.query_params.getlist("bbox")
    if not raw:
        return None
    try:
        nums = [float(v) for v in raw]
    except ValueError:
        raise Invalid("bbox", "Input should be a valid number (bbox is 4 repeated keys)") from None
    return check_bbox(nums)


def intersects_bbox(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def point_in(bbox: list[float], lon: float, lat: float) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


# ----------------------------------------------------------------- rendering
ASSET_FIELDS = ("plume_png", "plume_rgb_png", "plume_tif", "con_tif", "rgb_png")


def asset_url(request: Request, key: str) -> str:
    return f"{service_root(request)}api/v1/catalog/asset/{key}"


def public(record: dict[str, Any], request: Request | None = None) -> dict[str, Any]:
    """A record as the API shows it: no internal `_` fields, RFC 3339 timestamps, absolute asset URLs."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dt.datetime):
            value = iso(value)
        elif request is not None and key in ASSET_FIELDS and isinstance(value, str):
            value = asset_url(request, value)
        out[key] = value
    return out


# ----------------------------------------------------------------- auth and rate limits
class RateLimiter:
    """Sliding one-minute window per client (bearer token, else address). `per_minute=None` = unlimited."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int | None:
        if not self.per_minute:
            return None
        now = time.monotonic()
        hits = self._hits.setdefault(client, deque())
        while hits and hits[0] <= now - 60.0:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(1, math.ceil(hits[0] + 60.0 - now))
        hits.append(now)
        return None


Handler = Callable[[Request], Awaitable[Response]]


def guarded(state: SimulatorState, limiter: RateLimiter, *, scoped: bool = False) -> Callable[[Handler], Handler]:
    """Auth and rate limit around a route.

    `scoped` (ScopedAuth): a valid access token is required (401 otherwise). Optional-auth routes serve
    anonymous callers; a *presented* token that is invalid or expired gets 401 there too when
    `strict_optional_auth` is on (simulator choice: the doc does not say; default on, so expiry is visible).
    """

    def wrap(handler: Handler) -> Handler:
        async def route(request: Request) -> Response:
            header = request.headers.get("authorization")
            token = state.tokens.check_request(request)
            if token is None and (scoped or (header and state.config.get("strict_optional_auth", True))):
                return JSONResponse({"detail": "Invalid token", "code": "token_not_valid"}, status_code=401)
            client = token.subject if token else (request.client.host if request.client else "anonymous")
            wait = limiter.retry_after(client)
            if wait is not None:
                return JSONResponse({"detail": f"Request was throttled. Expected available in {wait} seconds."},
                                    status_code=429, headers={"Retry-After": str(wait)})
            try:
                return await handler(request)
            except Invalid as exc:
                return exc.response()

        route.__name__ = handler.__name__
        return route

    return wrap
