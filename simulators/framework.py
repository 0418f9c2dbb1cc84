"""What every upstream simulator shares.

A simulator is a real ASGI app (Starlette) serving one upstream's documented contract from seeded data.
This module gives each of them:

- `SimulatorState`: seed, credentials, token store, fault settings and the request log;
- `create_simulator_app()`: the app factory that wraps the upstream's routes with fault injection,
  request logging and the admin routes under `/_sim/` (faults, log, token expiry);
- `ndjson_stream()` / `chunked()`: streaming helpers that honour the drip/truncate faults.

Faults come from the environment (`SIM_<NAME>_FAULTS`, JSON) or from `POST /_sim/faults` at run time:

    {"latency_ms": 50,               # added before every matching request
     "status": 503, "rate": 1.0,     # answer this status instead (rate = share of matching requests)
     "count": 2,                     # ... only for the next N matching requests (omit = until cleared)
     "retry_after": 2, "retry_after_unit": "s",   # Retry-After header on those answers ("s" or "ms")
     "malformed": true,              # answer 200 with a body that is not what the contract says
     "truncate_bytes": 2000,         # bodies stop after N bytes (connection closed mid-way)
     "drip_ms": 20,                  # bodies wait this long between chunks
     "path": "/api/v1/catalog"}      # only paths containing this (default: every non-admin path)

Streamed bodies (`chunked()`) honour `truncate_bytes`/`drip_ms` chunk by chunk; other bodies (those sent with a
`Content-Length`) are cut or sent in `DRIP_CHUNK`-byte pieces by the middleware. `GET /_sim/tokens` lists every
token the simulators in this process issued (for tests that check no token ever leaves geofed).

Simulators import nothing from `providers/`: they implement the contract on their own, so that a misreading
of the docs cannot hide by being shared between client and simulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

ADMIN_PREFIX = "/_sim"
DRIP_CHUNK = 4096  # bytes per piece when a non-streamed body is dripped
_STORES: weakref.WeakSet[TokenStore] = weakref.WeakSet()  # every token store of this process (`/_sim/tokens`)


@dataclass
class Faults:
    latency_ms: float = 0.0
    status: int | None = None
    rate: float = 1.0
    count: int | None = None
    retry_after: float | None = None
    retry_after_unit: str = "s"
    malformed: bool = False
    truncate_bytes: int | None = None
    drip_ms: float = 0.0
    path: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def applies_to(self, path: str) -> bool:
        return not path.startswith(ADMIN_PREFIX) and (self.path is None or self.path in path)


@dataclass
class Token:
    value: str
    subject: str
    expires_at: float


class TokenStore:
    """Issues opaque bearer tokens that expire after `ttl` seconds (or at once through `/_sim/tokens/expire`)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._tokens: dict[str, Token] = {}
        self.issued = 0
        self.values: list[str] = []  # every token ever issued or registered, revoked ones included
        _STORES.add(self)

    def issue(self, subject: str, ttl: float | None = None, prefix: str = "tok") -> Token:
        token = Token(f"{prefix}_{secrets.token_urlsafe(24)}", subject, time.time() + (ttl or self.ttl))
        self._tokens[token.value] = token
        self.issued += 1
        self.values.append(token.value)
        return token

    def register(self, value: str, subject: str, ttl: float | None = None) -> Token:
        """Accepts a token minted elsewhere (e.g. a JWT the simulator signs itself) until it expires."""
        token = Token(value, subject, time.time() + (ttl or self.ttl))
        self._tokens[value] = token
        self.issued += 1
        self.values.append(value)
        return token

    def check(self, value: str | None) -> Token | None:
        token = self._tokens.get(value or "")
        if token is None or token.expires_at <= time.time():
            return None
        return token

    def check_request(self, request: Request) -> Token | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return self.check(value.strip()) if scheme.lower() == "bearer" else None

    def revoke(self, value: str) -> None:
        self._tokens.pop(value, None)

    def expire_all(self) -> int:
        n = len(self._tokens)
        for token in self._tokens.values():
            token.expires_at = 0.0
        return n


@dataclass
class SimulatorState:
    name: str
    seed: int = 42
    credentials: dict[str, str] = field(default_factory=dict)
    token_ttl: float = 3600.0
    faults: Faults = field(default_factory=Faults)
    log: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.token_ttl)
        self._lock = threading.Lock()
        self._fault_rng = random.Random(self.seed)
        env = os.environ.get(f"SIM_{self.name.upper()}_FAULTS")
        if env:
            self.faults = Faults.from_dict(json.loads(env))

    def rng(self, salt: str = "") -> random.Random:
        """A deterministic RNG for data generation: same seed and salt → same data, every run."""
        return random.Random(f"{self.seed}:{self.name}:{salt}")

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(entry)

    def take_fault(self, path: str) -> Faults | None:
        """The faults that apply to this request, consuming one of `count` when an error status fires."""
        faults = self.faults
        if not faults.applies_to(path):
            return None
        return faults

    def fire_status(self, faults: Faults) -> bool:
        if faults.status is None:
            return False
        with self._lock:
            if faults.count is not None and faults.count <= 0:
                return False
            if faults.rate < 1.0 and self._fault_rng.random() >= faults.rate:
                return False
            if faults.count is not None:
                faults.count -= 1
            return True


class _FaultAndLogMiddleware:
    """Applies the current faults and appends each request to the log (admin routes excepted)."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "query": scope.get("query_string", b"").decode(),
            "ts": time.time(),
            "status": None,
            "client_port": (scope.get("client") or (None, None))[1],  # which pooled connection sent it
        }
        self.state.record(entry)
        faults = self.state.take_fault(path)
        if faults is not None and faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if faults is not None and self.state.fire_status(faults):
            headers = {}
            if faults.retry_after is not None:
                ra = faults.retry_after
                headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
            entry["status"] = faults.status
            body = {"error": f"simulated fault: HTTP {faults.status}", "status": faults.status}
            await JSONResponse(body, status_code=faults.status or 500, headers=headers)(scope, receive, send)
            return
        if faults is not None and faults.malformed:
            entry["status"] = 200
            await Response(b'{"this is": not json', media_type="application/json")(scope, receive, send)
            return

        async def logging_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        if faults is not None and (faults.truncate_bytes is not None or faults.drip_ms):
            await self.app(scope, receive, _SizedBodyFaults(logging_send, faults))
            return
        await self.app(scope, receive, logging_send)


class _SizedBodyFaults:
    """Cuts or drips a body sent with a `Content-Length` (streamed bodies are left to `chunked()`)."""

    def __init__(self, send: Send, faults: Faults) -> None:
        self.send = send
        self.faults = faults
        self.sized = False
        self.sent = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.sized = any(k.lower() == b"content-length" for k, _ in message.get("headers", []))
            await self.send(message)
            return
        if not self.sized or message["type"] != "http.response.body":
            await self.send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        limit = self.faults.truncate_bytes
        if limit is not None and self.sent + len(body) >= limit:
            await self.send({"type": "http.response.body", "body": body[: max(0, limit - self.sent)],
                             "more_body": True})
            raise ConnectionAbortedError("simulated truncated body")  # the client sees a broken body
        pieces = [body[i:i + DRIP_CHUNK] for i in range(0, len(body), DRIP_CHUNK)] or [b""]
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            await self.send({"type": "http.response.body", "body": piece, "more_body": more or not last})
            self.sent += len(piece)
            if self.faults.drip_ms and not last:
                await asyncio.sleep(self.faults.drip_ms / 1000.0)


def _admin_routes(state: SimulatorState) -> list[BaseRoute]:
    async def faults(request: Request) -> Response:
        if request.method == "POST":
            state.faults = Faults.from_dict(await request.json())
        elif request.method == "DELETE":
            state.faults = Faults()
        return JSONResponse(state.faults.__dict__)

    async def log(request: Request) -> Response:
        if request.method == "DELETE":
            with state._lock:
                state.log.clear()
            return JSONResponse([])
        return JSONResponse(state.log)

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": state.tokens.expire_all()})

    async def tokens(request: Request) -> Response:
        every = sorted({value for store in list(_STORES) for value in store.values})
        return JSONResponse({"tokens": list(state.tokens.values), "all": every})

    async def info(request: Request) -> Response:
        return JSONResponse(
            {"name": state.name, "seed": state.seed, "tokens_issued": state.tokens.issued, **state.config}
        )

    return [
        Route(f"{ADMIN_PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/log", log, methods=["GET", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/tokens/expire", expire_tokens, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/tokens", tokens, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/info", info, methods=["GET"]),
    ]


def service_root(request: Request) -> str:
    """The simulator's service root with a trailing slash, mount path included.

    Starlette 1.x's `request.base_url` is the *top-level* app's root: it drops the `/<upstream>` mount under
    which `simulators.build_root_app` serves each simulator, so links must be built from this instead.
    """
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}/"


def create_simulator_app(state: SimulatorState, routes: Iterable[BaseRoute]) -> Starlette:
    """The ASGI app of one simulator: its contract routes plus `/_sim/*`, wrapped in faults and logging."""
    app = Starlette(routes=[*_admin_routes(state), *routes])
    app.state.sim = state
    app.add_middleware(_FaultAndLogMiddleware, state=state)
    return app


async def chunked(
    state: SimulatorState, chunks: Iterable[bytes] | AsyncIterator[bytes], path: str = ""
) -> AsyncIterator[bytes]:
    """Yields `chunks`, honouring the drip and truncate faults (a truncated body just stops)."""
    faults = state.take_fault(path or "/")
    sent = 0
    limit = faults.truncate_bytes if faults is not None else None
    drip = (faults.drip_ms / 1000.0) if faults is not None else 0.0

    async def source() -> AsyncIterator[bytes]:
        if hasattr(chunks, "__aiter__"):
            async for c in chunks:  # type: ignore[union-attr]
                yield c
        else:
            for c in chunks:  # type: ignore[union-attr]
                yield c

    async for chunk in source():
        if limit is not None and sent + len(chunk) >= limit:
            yield chunk[: max(0, limit - sent)]
            # End the body early without the terminating chunk: the client sees a broken stream.
            raise ConnectionAbortedError("simulated truncated stream")
        sent += len(chunk)
        yield chunk
        if drip:
            await asyncio.sleep(drip)
        else:
            await asyncio.sleep(0)


def ndjson_chunks(lines: Iterable[str], chunk_size: int = 8192) -> Iterable[bytes]:
    """Joins NDJSON lines into fixed-size chunks, so lines are split across chunks as on a real server."""
    buf = bytearray()
    for line in lines:
        buf += line.encode() + b"\n"
        while len(buf) >= chunk_size:
            yield bytes(buf[:chunk_size])
            del buf[:chunk_size]
    if buf:
        yield bytes(buf)


def streaming_response(
    state: SimulatorState, request: Request, chunks: Iterable[bytes], media_type: str
) -> StreamingResponse:
    return StreamingResponse(chunked(state, chunks, request.url.path), media_type=media_type)


def require_bearer(state: SimulatorState, status: int = 401) -> Callable[..., Any]:
    """Decorator for route handlers that need a valid bearer token (`status` when missing or expired)."""

    def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if state.tokens.check_request(request) is None:
                return JSONResponse({"detail": "invalid or expired token"}, status_code=status)
            return await handler(request)

        guarded.__name__ = handler.__name__
        return guarded

    return wrap
