"""Auth strategies, one per upstream flavour, sharing the refresh discipline.

`TokenAuth` keeps one token per upstream, refreshes it `margin` seconds before it expires, lets exactly one
caller refresh while concurrent callers wait for that refresh, and drops the token when the upstream says it
expired (the client then retries the call once). Subclasses implement `fetch()` only.

With `GEOFED_REDIS_URL` and `GEOFED_TOKEN_KEY` set, replicas share tokens (`SharedTokens`): a replica that needs
one first looks in Redis; one replica at a time (a short Redis lock) asks the token endpoint and stores the token,
Fernet-encrypted, until it expires; the others wait for it. N replicas thus ask once per token lifetime.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
import orjson
from redis.exceptions import RedisError

from geofed import errors, shared
from geofed.settings import get_settings

LOGGER = logging.getLogger("geofed.http")


class UpstreamClient(Protocol):
    """What auth strategies use of `geofed.http.client.UpstreamClient` (a protocol: no import cycle)."""

    name: str
    title: str

    async def token_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...

    def decode_json(self, response: httpx.Response) -> Any: ...


@dataclass
class Token:
    value: str
    expires_at: float  # epoch seconds; float("inf") for tokens without a known expiry


class Auth:
    """No authentication (anonymous reads)."""

    #: upstream statuses that mean "your token expired": the call is retried once with a fresh token
    expired_statuses: tuple[int, ...] = (401,)

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        return {}

    async def invalidate(self, used_headers: dict[str, str]) -> bool:
        """Forget the token these headers carried; True when a retry with a new token makes sense."""
        return False

    def secrets(self) -> list[str]:
        """Strings that must never appear in logs, errors or links (redacted wherever text leaves geofed)."""
        return []

    async def close(self, client: UpstreamClient) -> None:
        """Called at shutdown (e.g. to log out)."""


class StaticBearer(Auth):
    """A token configured as is (`GEOFED_<UPSTREAM>_TOKEN`): no refresh possible."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def secrets(self) -> list[str]:
        return [self.token]


class SharedTokens:
    """Tokens one replica fetched, for the others: in Redis under `<prefix>token:<slot>`, Fernet-encrypted,
    expiring with the token. A slot is a keyed digest of the upstream and the account (never the account
    itself). Redis being unreachable is not an error: the replica then asks the token endpoint itself."""

    def __init__(self, store: shared.Shared, wait: float = 10.0) -> None:
        assert store.cipher is not None, "sharing tokens needs GEOFED_TOKEN_KEY"
        self.store = store
        self.wait = wait

    @classmethod
    def current(cls) -> SharedTokens | None:
        settings = get_settings()
        store = shared.current(settings)
        return cls(store, settings.shared_wait) if store is not None and store.cipher is not None else None

    async def read(self, slot: str) -> Token | None:
        raw = await self.store.redis().get(self.store.key("token", slot))
        plain = self.store.decrypt(raw) if raw is not None else None
        if plain is None:
            return None
        body = orjson.loads(plain)
        return Token(str(body["value"]), float(body["expires_at"]))

    async def write(self, slot: str, token: Token) -> None:
        ttl = min(token.expires_at - time.time(), 7 * 86400.0)  # one without a known expiry: a week at most
        if ttl <= 1:
            return
        plain = orjson.dumps({"value": token.value, "expires_at": min(token.expires_at, 1e12)})
        await self.store.redis().set(self.store.key("token", slot), self.store.encrypt(plain), px=int(ttl * 1000))

    async def drop(self, slot: str, value: str) -> None:
        """Forgets the shared token if it is still `value` (the upstream called it expired)."""
        try:
            held = await self.read(slot)
            if held is not None and held.value == value:
                await self.store.redis().delete(self.store.key("token", slot))
        except RedisError:
            pass

    async def obtain(self, slot: str, margin: float, fetch: Any) -> Token:
        """A fresh token: the shared one, else fetched by this replica while it holds the slot's lock (the others
        wait for it, at most `wait` s: then they fetch their own)."""
        deadline = time.monotonic() + self.wait
        try:
            while True:
                token = await self.read(slot)
                if token is not None and token.expires_at - margin > time.time():
                    return token
                lock = self.store.lock(f"token:{slot}", ttl=self.wait + 30)
                if await lock.acquire():
                    try:
                        token = await self.read(slot)  # stored while we took the lock?
                        if token is not None and token.expires_at - margin > time.time():
                            return token
                        token = await fetch()
                        await self.write(slot, token)
                        return token
                    finally:
                        await _release(lock)
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        except RedisError as exc:
            LOGGER.warning("shared tokens unavailable (%s): this replica asks the token endpoint itself",
                           type(exc).__name__)
        return await fetch()


async def _release(lock: Any) -> None:
    try:
        await lock.release()
    except RedisError:  # lapsed (LockError is one) or Redis gone: it expires on its own
        pass


class TokenAuth(Auth):
    """Base for token flows: single-flight refresh, early refresh, invalidate-on-expiry; tokens shared between
    replicas through Redis when configured (`SharedTokens`)."""

    def __init__(self, margin: float = 60.0) -> None:
        self.margin = margin
        self._token: Token | None = None
        self._lock: asyncio.Lock | None = None
        self.refreshes = 0
        self._shared: SharedTokens | bool | None = False  # False: not looked up yet
        self._slot: str | None = None

    def share(self, tokens: SharedTokens | None) -> None:
        """Shares this flow's tokens through `tokens` (None: never); by default from the settings."""
        self._shared = tokens

    @property
    def shares_tokens(self) -> bool:
        """True once this flow's tokens are known to be shared with other replicas (e.g. a logout at shutdown
        would then end the token the others still use)."""
        return isinstance(self._shared, SharedTokens)

    def _sharing(self, client: UpstreamClient) -> tuple[SharedTokens, str] | None:
        if self._shared is False:
            self._shared = SharedTokens.current()
        if not isinstance(self._shared, SharedTokens):
            return None
        if self._slot is None:
            # the account, as configured (read before the first token: the flow's own state is still empty)
            config = sorted((k, v) for k, v in vars(self).items() if k not in _VOLATILE and (
                isinstance(v, str | int | float | bool) or (isinstance(v, dict) and all(
                    isinstance(x, str) for x in (*v, *v.values())))))
            identity = repr((client.name, getattr(client, "base_url", ""), type(self).__name__, config))
            self._slot = f"{client.name}:{self._shared.store.digest(identity)}"
        return self._shared, self._slot

    async def _obtain(self, client: UpstreamClient) -> Token:
        async def fetch() -> Token:
            token = await self.fetch(client)
            self.refreshes += 1
            return token

        sharing = self._sharing(client)
        if sharing is None:
            return await fetch()
        tokens, slot = sharing
        return await tokens.obtain(slot, self.margin, fetch)

    async def fetch(self, client: UpstreamClient) -> Token:  # pragma: no cover - abstract
        raise NotImplementedError

    def header_for(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _fresh(self) -> bool:
        token = self._token
        return token is not None and token.expires_at - self.margin > time.time()

    async def headers(self, client: UpstreamClient) -> dict[str, str]:
        if not self._fresh():
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._fresh():  # another caller may have refreshed while we waited
                    self._token = await self._obtain(client)
        assert self._token is not None
        return self.header_for(self._token.value)

    async def invalidate(self, used_headers: dict[str, str]) -> bool:
        token = self._token
        if token is not None and self.header_for(token.value) == {
            k: v for k, v in used_headers.items() if k in self.header_for(token.value)
        }:
            self._token = None
            if isinstance(self._shared, SharedTokens) and self._slot is not None:
                await self._shared.drop(self._slot, token.value)  # the other replicas must not reuse it
        return True

    def secrets(self) -> list[str]:
        return [self._token.value] if self._token else []


_VOLATILE = frozenset({"margin", "refreshes", "_token", "_lock", "_shared", "_slot"})


def basic_header(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying the signature (only to know when to refresh: the
    upstream verifies it); None when the token is not a JWT or has no `exp`."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def expiry_from(payload: dict[str, object], default_ttl: float) -> float:
    """Absolute expiry from a token response: `expires_in` seconds, else `default_ttl`."""
    expires_in = payload.get("expires_in")
    try:
        ttl = float(expires_in) if expires_in is not None else default_ttl  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ttl = default_ttl
    return time.time() + ttl


class ClientCredentials(TokenAuth):
    """OAuth2 client-credentials grant (RFC 6749 §4.4): form POST to the token URL, `expires_in` from the answer."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, margin: float = 60.0,
                 default_ttl: float = 3600.0) -> None:
        super().__init__(margin)
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.default_ttl = default_ttl

    async def fetch(self, client: UpstreamClient) -> Token:
        response = await client.token_request(
            "POST",
            self.token_url,
            data={"grant_type": "client_credentials", "client_id": self.client_id,
                  "client_secret": self.client_secret},
        )
        payload = client.decode_json(response)
        if not isinstance(payload, dict) or not payload.get("access_token"):
            raise errors.UpstreamError(f"{client.title}'s token endpoint answered without an access_token",
                                       upstream=client.name)
        return Token(str(payload["access_token"]), expiry_from(payload, self.default_ttl))

    def secrets(self) -> list[str]:
        return [*super().secrets(), self.client_secret]
