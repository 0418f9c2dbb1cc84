"""Request limits at the edge, before pygeoapi or stac-fastapi read anything (issue 15, abuse).

One ASGI middleware, `RequestLimits`:
- a body over `GEOFED_MAX_BODY_BYTES` → 413 (Content-Length checked first; a body without one is read
  incrementally and refused as soon as it passes the limit; what follows is drained, not kept, so the client
  reads the answer);
- a CQL2 filter (GET `filter=` on OGC items and STAC search/items, the POST OGC items body, the POST STAC
  search `filter`) over `GEOFED_FILTER_MAX_LENGTH` characters or `GEOFED_FILTER_MAX_DEPTH` levels → 400
  naming `filter`: pygeoapi parses and walks GET filters recursively before geofed sees them;
- a GeoJSON geometry anywhere in a JSON body (STAC `intersects`, process inputs) or in STAC GET `intersects`
  with more than `GEOFED_MAX_VERTICES` vertices → 400 naming it;
- STAC `limit` above `GEOFED_STAC_MAX_LIMIT` is reduced to it (STAC API item search: "the server must return
  the maximum possible number of items, rather than responding with an error"); pygeoapi clamps OGC
  `limit` to `server.limits.max_items` itself.
Errors are OGC exception JSON, or STAC error JSON under `/stac`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geofed import cql2, errors
from geofed.errordocs import error_response
from geofed.ogc import workarounds
from geofed.settings import Settings

OGC_ITEMS = re.compile(r"^/collections/[^/]+/items/?$")
STAC_SEARCH = re.compile(r"^/stac/(search|collections/[^/]+/items)/?$")
DRAIN_BYTES = 256 * 1024 * 1024  # most of a refused body read (and dropped) so that the client gets the 413
DRAIN_SECONDS = 30.0
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection"}


class PayloadTooLarge(errors.GeofedError):
    status = 413
    code = "PayloadTooLarge"


def vertices(geometry: dict[str, Any]) -> int:
    """Number of positions in a GeoJSON geometry (0 for anything malformed), without recursion."""
    count, stack = 0, [geometry]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend([item.get("coordinates"), item.get("geometries")])  # any type: malformed is counted 0
        elif isinstance(item, list):
            if item and all(isinstance(v, int | float) for v in item):
                count += 1
            else:
                stack.extend(item)
    return count


def check_geometries(value: Any, max_vertices: int, where: str = "body") -> None:
    """Every GeoJSON geometry inside a JSON value has at most `max_vertices` vertices (400 naming its key)."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, name = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")  # any JSON value: only a string names a geometry type
            if isinstance(kind, str) and kind in GEOMETRY_TYPES and vertices(item) > max_vertices:
                raise errors.InvalidParameter(f"'{name}' has more than {max_vertices} vertices; simplify it",
                                              parameter=name)
            stack.extend((v, name if k in ("value", "args") else k)  # {"value": geometry}: a qualified input
                         for k, v in item.items() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, name) for v in item if isinstance(v, dict | list))


def check_filter(value: Any, lang: str | None = None) -> None:
    """Bounds a filter before anyone parses it recursively, and answers a filter that does not parse with
    geofed's message (pygeoapi's is "Bad CQL text"). A JSON text that is not JSON is left to the face."""
    if isinstance(value, str) and (lang == "cql2-json" or value.lstrip().startswith("{")):
        cql2.check_text_size(value)
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
    if isinstance(value, str):
        cql2.parse_text(value)
    elif isinstance(value, dict | list):
        cql2.parse_json(value)


def error(exc: errors.GeofedError, stac: bool) -> Response:
    """OGC exception JSON, or STAC error JSON (naming the parameter) under /stac."""
    return error_response(exc, stac)


def json_nesting(body: bytes) -> int:
    """Bracket depth of a JSON text (strings skipped), without parsing it: orjson refuses depth > 1024."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        stac = path.startswith("/stac")
        try:
            if scope["method"] in ("GET", "HEAD") and (OGC_ITEMS.match(path) or STAC_SEARCH.match(path)):
                scope = self._query_string(scope, stac)
            elif scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._body(scope, receive)
                body = self._check_body(scope, path, body)
                receive = _replay(body, receive)
        except PayloadTooLarge as exc:
            await _drain(receive)  # before answering: once a response is complete, the server stops reading
            await error(exc, stac)(scope, receive, send)
            return
        except errors.GeofedError as exc:
            await error(exc, stac)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    # ------------------------------------------------------------ query string
    def _query_string(self, scope: Scope, stac: bool) -> Scope:
        raw = scope.get("query_string", b"").decode("latin-1")
        if not raw:
            return scope
        params = parse_qsl(raw, keep_blank_values=True)
        found = dict(params)
        if "filter" in found:
            check_filter(found["filter"], found.get("filter-lang"))
        if stac and found.get("intersects"):
            try:
                geometry = orjson.loads(found["intersects"])
            except orjson.JSONDecodeError:
                geometry = None
            check_geometries(geometry, self.settings.max_vertices, "intersects")
        if stac and _over(found.get("limit"), self.settings.stac_max_limit):
            clamped = [(k, str(self.settings.stac_max_limit) if k == "limit" else v) for k, v in params]
            return {**scope, "query_string": urlencode(clamped).encode("latin-1")}
        return scope

    # ------------------------------------------------------------ body
    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the request body is {int(declared)} bytes; at most {limit} are accepted")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _check_body(self, scope: Scope, path: str, body: bytes) -> bytes:
        if scope["method"] == "POST" and OGC_ITEMS.match(path):
            body = workarounds.items_post(scope, body)
        if not body or b"{" not in body[:64]:
            return body
        if json_nesting(body) > 2 * self.settings.filter_max_depth + 8:
            parameter = "filter" if b'"filter"' in body or OGC_ITEMS.match(path) else "body"
            raise cql2.FilterTooComplex(f"'{parameter}' is nested too deeply", parameter=parameter)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if "surrogate" in str(exc):
                # JSON's syntax admits "\udb3a"; Python's json (pydantic, both faces) decodes it to a string no
                # encoder can write back (orjson, UTF-8 responses): refused here instead of a 500 further on
                raise errors.InvalidParameter(
                    "the request body has a string with an unpaired surrogate escape (\\uD800–\\uDFFF), which is "
                    "not Unicode text", parameter="body") from None
            return body  # the face answers malformed JSON itself
        if OGC_ITEMS.match(path):
            check_filter(document)
            return body
        check_geometries(document, self.settings.max_vertices)
        if isinstance(document, dict) and STAC_SEARCH.match(path):
            if document.get("filter") is not None:
                check_filter(document["filter"], document.get("filter-lang"))
            if _over(document.get("limit"), self.settings.stac_max_limit):
                body = orjson.dumps({**document, "limit": self.settings.stac_max_limit})
        return body


def _over(value: Any, maximum: int) -> bool:
    try:
        return int(value) > maximum
    except (TypeError, ValueError):
        return False


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    sent = {"done": False}

    async def replay() -> Message:
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _drain(receive: Receive) -> None:
    """Reads (and drops) the rest of a refused body, bounded in bytes and time, so that the client, which
    writes its whole request before reading, sees the 413 instead of a reset connection."""
    size, deadline = 0, time.monotonic() + DRAIN_SECONDS
    while size < DRAIN_BYTES and time.monotonic() < deadline:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
