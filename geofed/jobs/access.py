"""Who is calling: geofed's API keys (`GEOFED_API_KEYS`, `GEOFED_API_KEYS_FILE`) for credit-spending processes
and for jobs.

- Keys are kept only as SHA-256 digests (a job row stores the digest of the key that created it) and compared
  with `hmac.compare_digest` against every configured digest, so timing reveals neither a key nor which one
  matched. A key never reaches a log line, a response or an exception message.
- A process whose class sets `requires_api_key = True` spends upstream credits: executing it needs a valid key
  (401 without one, 403 with a wrong one). When no keys are configured (a demo), everything is open.
- With keys configured, a job is visible only to the key that created it (jobs created without a key only to
  callers without one); anything else answers 404, so job ids cannot be probed.

The caller travels in the ASGI scope (`scope["state"]["geofed.caller"]`) and, for code running in worker threads
(the pygeoapi manager), in the `CALLER` context variable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from geofed import errors
from geofed.errordocs import error_response
from geofed.jobs.store import ANY_OWNER

if TYPE_CHECKING:
    from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
KEY_HEADER = "x-api-key"
_EXECUTION = re.compile(r"^/processes/(?P<process>[^/]+)/execution/?$")


def key_digest(key: str) -> str:
    return hashlib.sha256(b"geofed-api-key\0" + key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    key_hash: str | None = None  # digest of a valid key, or None (anonymous)
    keys_enabled: bool = False

    @property
    def owner_filter(self) -> Any:
        """What a job's `owner` must equal for this caller to see it (ANY_OWNER when keys are off)."""
        return self.key_hash if self.keys_enabled else ANY_OWNER

    def may_see(self, owner: str | None) -> bool:
        if not self.keys_enabled:
            return True
        if owner is None or self.key_hash is None:
            return owner is None and self.key_hash is None
        return hmac.compare_digest(owner, self.key_hash)


ANONYMOUS = Caller()
CALLER: ContextVar[Caller] = ContextVar("geofed_caller", default=ANONYMOUS)


class KeyRing:
    """The configured keys, as digests only: `GEOFED_API_KEYS` plus the lines of `GEOFED_API_KEYS_FILE` (blank
    lines and `#` comments skipped). The file is re-read when its modification time or size changes (checked at
    most once a second), so keys rotate without a restart; an unreadable file keeps the keys last read."""

    def __init__(self, keys: Iterable[str], file: Path | None = None) -> None:
        self._fixed = tuple(key_digest(k) for k in keys)
        self._file = file
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._from_file: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._reload()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.api_key_list(), settings.api_keys_file)

    def _reload(self) -> None:
        if self._file is None:
            return
        with self._lock:
            now = time.monotonic()
            if self._stamp is not None and now - self._checked < 1.0:
                return
            self._checked = now
            try:
                stat = self._file.stat()
                stamp = (stat.st_mtime, stat.st_size)
                if stamp == self._stamp:
                    return
                lines = self._file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                LOGGER.warning("GEOFED_API_KEYS_FILE cannot be read (%s); keeping the keys read before",
                               type(exc).__name__)
                return
            keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
            self._from_file = tuple(key_digest(k) for k in keys)
            self._stamp = stamp
            LOGGER.info("API keys file read: %d keys", len(keys))

    @property
    def _digests(self) -> tuple[str, ...]:
        self._reload()
        return self._fixed + self._from_file

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def matches(self, presented: str | None) -> str | None:
        """The digest of `presented` when it is a configured key, else None."""
        if not presented:
            return None
        digest = key_digest(presented)
        match = False
        for known in self._digests:  # no early exit: the time taken does not depend on which key matched
            match |= hmac.compare_digest(digest, known)
        return digest if match else None

    def identify(self, presented: str | None) -> Caller:
        """The caller for a presented key; raises Forbidden for a key that is not configured."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            return Caller(None, True)
        digest = self.matches(presented)
        if digest is None:
            raise errors.Forbidden("the API key is not valid")
        return Caller(digest, True)


def presented_key(headers: dict[str, str]) -> str | None:
    """The key from `X-API-Key`, or from `Authorization: Bearer <key>`."""
    if headers.get(KEY_HEADER):
        return headers[KEY_HEADER].strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def caller_of(scope: Scope) -> Caller:
    return scope.get("state", {}).get("geofed.caller", ANONYMOUS)


class ApiKeyGuard:
    """ASGI middleware: identifies the caller on job and execution requests and refuses credit-spending
    executions without a valid key. `protected()` returns the ids of the processes that need a key."""

    def __init__(self, app: ASGIApp, keys: KeyRing, protected: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self.keys = keys
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        execution = _EXECUTION.match(path)
        if not (path.startswith("/jobs") or execution):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            caller = self.keys.identify(presented_key(headers))
            if (
                execution
                and scope["method"] == "POST"
                and self.keys.enabled
                and caller.key_hash is None
                and execution["process"] in self.protected()
            ):
                raise errors.Unauthorized(
                    f"process {execution['process']} spends upstream credits: send a valid API key in the "
                    "X-API-Key header"
                )
        except (errors.Unauthorized, errors.Forbidden) as exc:
            response = error_response(exc)
            if isinstance(exc, errors.Unauthorized):
                response.headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["geofed.caller"] = caller
        token = CALLER.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            CALLER.reset(token)
