"""State that replicas share through Redis (`GEOFED_REDIS_URL`): what makes N replicas behind a load balancer act
as one server.

- upstream tokens (`geofed.http.auth.SharedTokens`), Fernet-encrypted with `GEOFED_TOKEN_KEY`;
- short locks, so that one replica reads an upstream while the others wait for its answer in the shared read
  cache (`geofed.http.cache`) or for its token;
- memos of bounded size (the STAC federation's sorted member reads), expiring with the cache TTL.

Without `GEOFED_REDIS_URL`, `current()` is None and every caller keeps its process-local behaviour. Redis being
unreachable is never an error: a caller that cannot use it does the work itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import threading
import zlib
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import RedisError

from geofed.settings import Settings, get_settings

LOGGER = logging.getLogger("geofed.shared")
MEMO_MAX_BYTES = 8 * 1024 * 1024  # one shared memo, compressed; a larger one stays local to its replica


def _fernet(key: str) -> Fernet:
    """A Fernet from a Fernet key as is, or from any other string through SHA-256."""
    try:
        return Fernet(key.encode())
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class Shared:
    """One deployment's Redis: a client per event loop (redis' asyncio connections belong to the loop that made
    them), prefixed keys, locks, the token cipher and memos."""

    def __init__(self, url: str, prefix: str = "geofed:", token_keys: list[str] | None = None) -> None:
        self.url = url
        self.prefix = prefix
        keys = [k for k in (token_keys or []) if k]
        self.cipher = MultiFernet([_fernet(k) for k in keys]) if keys else None
        # names of Redis keys derived from credentials must not reveal them: keyed digests
        self._name_key = hashlib.sha256(b"geofed-shared-names\0" + keys[0].encode()).digest() if keys else b""
        self._clients: WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = WeakKeyDictionary()
        self._guard = threading.Lock()

    def redis(self) -> Redis:
        loop = asyncio.get_running_loop()
        with self._guard:
            client = self._clients.get(loop)
            if client is None:
                client = Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
                self._clients[loop] = client
            return client

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def digest(self, text: str) -> str:
        """A name for `text` (e.g. an upstream account) that does not reveal it."""
        return hmac.new(self._name_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def lock(self, name: str, ttl: float) -> Lock:
        """A short lock (`SET NX PX`, released only by its holder); it lapses after `ttl` s if the holder dies."""
        return self.redis().lock(self.key("lock", name), timeout=ttl, blocking=False)

    async def held(self, name: str) -> bool:
        return bool(await self.redis().exists(self.key("lock", name)))

    # ------------------------------------------------------------------ secrets at rest
    def encrypt(self, data: bytes) -> bytes:
        assert self.cipher is not None
        return self.cipher.encrypt(data)

    def decrypt(self, data: bytes) -> bytes | None:
        """None for what no configured key opens (written under a retired key, or not by geofed)."""
        assert self.cipher is not None
        try:
            return self.cipher.decrypt(data)
        except InvalidToken:
            return None

    # ------------------------------------------------------------------ memos
    async def memo_get(self, name: str) -> Any | None:
        try:
            raw = await self.redis().get(self.key("memo", name))
        except RedisError as exc:
            LOGGER.warning("shared memo unavailable (%s): reading on this replica", type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            return orjson.loads(zlib.decompress(raw))
        except (zlib.error, orjson.JSONDecodeError):
            return None

    async def memo_put(self, name: str, value: Any, ttl: float) -> bool:
        """Shares `value` for `ttl` s when it is at most `MEMO_MAX_BYTES` compressed; True when shared."""
        raw = zlib.compress(orjson.dumps(value), 6)
        if len(raw) > MEMO_MAX_BYTES or ttl <= 0:
            return False
        try:
            await self.redis().set(self.key("memo", name), raw, px=max(1, int(ttl * 1000)))
        except RedisError as exc:
            LOGGER.warning("shared memo unavailable (%s): kept on this replica", type(exc).__name__)
            return False
        return True


_instances: dict[tuple[str, str, tuple[str, ...]], Shared] = {}
_instances_lock = threading.Lock()


def current(settings: Settings | None = None) -> Shared | None:
    """The deployment's shared state, or None without `GEOFED_REDIS_URL`."""
    settings = settings or get_settings()
    if settings.redis_url is None:
        return None
    keys = settings.token_key.get_secret_value().split(",") if settings.token_key else []
    ident = (settings.redis_url.get_secret_value(), settings.redis_prefix, tuple(k.strip() for k in keys))
    with _instances_lock:
        if ident not in _instances:
            _instances[ident] = Shared(ident[0], ident[1], list(ident[2]))
        return _instances[ident]


def startup_problem(settings: Settings) -> str | None:
    """Why this server must not start as configured (one line), or None."""
    shared_by = [name for name, value in (("GEOFED_DATABASE_URL", settings.database_url),
                                          ("GEOFED_REDIS_URL", settings.redis_url)) if value is not None]
    if shared_by and settings.pagination_secret is None:
        return (f"{' and '.join(shared_by)} {'is' if len(shared_by) == 1 else 'are'} set (a deployment of several "
                "replicas) but GEOFED_PAGINATION_SECRET is not: each replica would sign STAC paging tokens with "
                "its own random key and refuse the others' next pages; set GEOFED_PAGINATION_SECRET to the same "
                "long random string on every replica")
    return None


def token_sharing_note(settings: Settings) -> str | None:
    """A warning when Redis is configured but upstream tokens cannot be shared."""
    if settings.redis_url is not None and settings.token_key is None:
        return ("GEOFED_REDIS_URL is set but GEOFED_TOKEN_KEY is not: upstream tokens are not shared, each replica "
                "asks the token endpoints itself")
    return None
