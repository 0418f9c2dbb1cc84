"""The STAC federation's paging token signer (`stac_bridge.token`), in-process.

A token must come back exactly as it was issued, and every other token — forged, edited, truncated, expired,
issued for another query, by another deployment or by another server version — must be refused with a 400
that names the `token` parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import zlib
from typing import Any

import orjson
import pytest

from geofed.errors import InvalidParameter
from stac_bridge.token import TokenSigner, generated_secret, query_hash

SECRET = b"k" * 32
QUERY = {"collections": ["a", "b"], "limit": 10, "bbox": [0, 0, 1, 1]}
STATE: dict[str, Any] = {
    "members": {"carbonmapper": {"next": "cursor-1", "offset": 40}, "epoch": None},
    "stash": [{"id": "x", "collection": "a"}],
    "seen": ["a/x", "b/y"],
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(body: dict[str, Any], secret: bytes = SECRET) -> str:
    """A token made by hand in the documented format (orjson → zlib → base64url `.` HMAC-SHA256)."""
    payload = b64(zlib.compress(orjson.dumps(body)))
    return f"{payload}.{b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())}"


def refused(signer: TokenSigner, token: str, qhash: str, reason: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        signer.decode(token, qhash)
    assert caught.value.parameter == "token"
    assert caught.value.status == 400
    assert reason in caught.value.message


def test_round_trip_returns_the_state_and_is_url_safe() -> None:
    signer = TokenSigner(SECRET)
    qhash = query_hash(QUERY)
    token = signer.encode(STATE, qhash)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert signer.decode(token, qhash) == STATE
    assert signer.decode(f"  {token}\n", qhash) == STATE  # pasted with whitespace
    # another replica configured with the same secret reads it too
    assert TokenSigner(SECRET).decode(token, qhash) == STATE


def test_query_hash_ignores_key_order_and_sees_values() -> None:
    assert query_hash(QUERY) == query_hash(dict(reversed(list(QUERY.items()))))
    assert query_hash(QUERY) != query_hash({**QUERY, "limit": 11})


def test_edited_truncated_or_foreign_tokens_are_refused() -> None:
    signer = TokenSigner(SECRET)
    qhash = query_hash(QUERY)
    token = signer.encode(STATE, qhash)
    payload, signature = token.split(".")
    flipped = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
    for bad in (f"{flipped}.{signature}", token[:-3], payload, f".{signature}", "", "not a token"):
        refused(signer, bad, qhash, "not a valid paging token")
    other = TokenSigner(generated_secret()).encode(STATE, qhash)  # another deployment (or a restart without a secret)
    refused(signer, other, qhash, "not a valid paging token")


def test_a_token_of_another_query_is_refused() -> None:
    signer = TokenSigner(SECRET)
    token = signer.encode(STATE, query_hash(QUERY))
    refused(signer, token, query_hash({**QUERY, "limit": 11}), "different query")


def test_an_expired_token_is_refused() -> None:
    qhash = query_hash(QUERY)
    token = TokenSigner(SECRET, ttl=-1).encode(STATE, qhash)
    refused(TokenSigner(SECRET), token, qhash, "expired")


def test_signed_but_unusable_tokens_are_refused() -> None:
    signer = TokenSigner(SECRET)
    qhash = query_hash(QUERY)
    future = int(time.time() + 600)
    refused(signer, forge({"v": 1, "q": qhash, "exp": future, "s": STATE}), qhash, "another server version")
    garbage = b64(b"not zlib at all")
    signature = b64(hmac.new(SECRET, garbage.encode(), hashlib.sha256).digest())
    refused(signer, f"{garbage}.{signature}", qhash, "cannot be read")
    # the secret is the only thing that makes a token genuine: one forged with it in the current version passes
    genuine = signer.encode({}, qhash).split(".")[0]
    version = orjson.loads(zlib.decompress(base64.urlsafe_b64decode(genuine + "=" * (-len(genuine) % 4))))["v"]
    assert signer.decode(forge({"v": version, "q": qhash, "exp": future, "s": STATE}), qhash) == STATE
