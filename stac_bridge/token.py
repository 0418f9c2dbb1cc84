"""Stateless, HMAC-signed paging tokens for federated search.

A token carries everything the next page needs — each member's native paging state, the items fetched
but not yet returned (the stash), the keys of the last returned items (for de-duplication across pages),
a hash of the query it belongs to and an expiry — so any replica can answer the next page and nothing
is kept server-side. It is signed (HMAC-SHA256) so that a client can neither forge nor edit it: the
member states inside it are fed back to upstream clients, and a next URL is only ever built from a
member's configured base URL, never from anything a client sends.

Encoding is hand-written because no STAC library offers signed cursors: orjson → zlib → base64url,
then `.` and the base64url signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import zlib
from typing import Any

import orjson

from geofed.errors import InvalidParameter

TOKEN_TTL_SECONDS = 3600.0
_VERSION = 2  # 2: one lane per collection of a member that does not sort natively


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_hash(normalized_query: dict[str, Any]) -> str:
    """A short digest of the query a token belongs to (a token replayed on another query is refused)."""
    return hashlib.sha256(orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def generated_secret() -> bytes:
    """A random key, used when `GEOFED_PAGINATION_SECRET` is unset.

    Such tokens die with the process: they do not survive a restart and are refused by other replicas
    (each has its own key). Set `GEOFED_PAGINATION_SECRET` in any deployment with more than one replica.
    """
    return secrets.token_bytes(32)


class TokenSigner:
    """Signs with the first key and accepts a token signed with any of them, so that the secret can be rotated
    without breaking the searches in flight: `GEOFED_PAGINATION_SECRET=new,old`, later `new`. A `bytes` secret
    is read as that comma-separated list."""

    def __init__(self, secret: bytes | list[bytes], ttl: float = TOKEN_TTL_SECONDS) -> None:
        keys = [k.strip() for k in secret.split(b",")] if isinstance(secret, bytes) else list(secret)
        self._keys = [k for k in keys if k]
        if not self._keys:
            raise ValueError("a token signer needs at least one non-empty key")
        self.ttl = ttl

    def _sign(self, payload: bytes, key: bytes | None = None) -> str:
        return _b64(hmac.new(key or self._keys[0], payload, hashlib.sha256).digest())

    def _verified(self, payload: str, signature: str) -> bool:
        ok = False
        for key in self._keys:  # no early exit: the time taken does not tell which key signed it
            ok |= hmac.compare_digest(signature, self._sign(payload.encode(), key))
        return ok

    def encode(self, state: dict[str, Any], qhash: str) -> str:
        body = {"v": _VERSION, "q": qhash, "exp": int(time.time() + self.ttl), "s": state}
        payload = _b64(zlib.compress(orjson.dumps(body)))  # the default level: 9 costs several times more CPU
        return f"{payload}.{self._sign(payload.encode())}"

    def decode(self, token: str, qhash: str) -> dict[str, Any]:
        """The state inside `token`; 400 (naming `token`) when it is malformed, forged, expired or foreign."""
        payload, _, signature = token.strip().partition(".")
        if not payload or not signature or not self._verified(payload, signature):
            raise InvalidParameter(
                "'token' is not a valid paging token of this server (tampered, truncated, or from another "
                "deployment); restart the search without it", parameter="token",
            )
        try:
            body = orjson.loads(zlib.decompress(_unb64(payload)))
        except (ValueError, zlib.error, orjson.JSONDecodeError):
            raise InvalidParameter("'token' cannot be read; restart the search without it",
                                   parameter="token") from None
        if body.get("v") != _VERSION:
            raise InvalidParameter("'token' comes from another server version; restart the search",
                                   parameter="token")
        if float(body.get("exp", 0)) < time.time():
            raise InvalidParameter("'token' has expired; restart the search without it", parameter="token")
        if body.get("q") != qhash:
            raise InvalidParameter(
                "'token' belongs to a different query; send it with the same search parameters as the page "
                "that returned it", parameter="token",
            )
        return dict(body["s"])
