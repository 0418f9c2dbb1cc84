"""Epoch SCo2 API: HTTP and auth only (`GET /fetch_biomass_emissions`, a streamed NDJSON body).

The body is read incrementally and split into lines here; nothing ever holds the whole body. A body that breaks
off — the connection closes without the final chunk (httpx raises), even right after a complete line, or the
body ends inside a line — is an error (`stream_broken` → 502 "Epoch stream ended early"), never a shorter answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from geofed import errors
from geofed.http.auth import Auth, StaticBearer
from geofed.http.client import UpstreamClient
from geofed.settings import Settings
from geofed.upstreams import credentials, http

NAME = "epoch"
TITLE = "Epoch"
REAL_URL = "https://epoch-sco2-api.com"
PATH = "/fetch_biomass_emissions"


def make_auth(settings: Settings) -> Auth:
    """A static bearer token (`GEOFED_EPOCH_TOKEN`): the doc says nothing about obtaining or refreshing one."""
    token = credentials(NAME, settings).get("token")
    return StaticBearer(token) if token else Auth()  # no token: Epoch answers 401 → 502 naming Epoch


def flag(value: bool) -> str:
    return "true" if value else "false"


class EpochClient:
    def __init__(self, client: UpstreamClient | None = None) -> None:
        self.http = client or http(NAME)

    async def lines(self, params: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The NDJSON lines of one `fetch_biomass_emissions` call, blank lines skipped (as the doc's example
        does), read chunk by chunk. Closing the iterator early closes the upstream connection."""
        async with self.http.stream("GET", PATH, params=dict(params)) as response:
            pending = b""
            try:
                async for chunk in response.aiter_bytes():
                    pending += chunk
                    if b"\n" not in chunk:
                        continue
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        if line.strip():
                            yield line
            except httpx.TimeoutException as exc:
                self.http.stream_broken(exc)  # recorded as a broken stream, reported as the timeout it is
                raise errors.UpstreamTimeout(f"{TITLE} stopped sending mid-stream", upstream=NAME) from None
            except httpx.HTTPError as exc:  # RemoteProtocolError: closed without the final chunk
                raise self.http.stream_broken(exc) from None
            if pending.strip():
                # The body ended cleanly (the transport saw its end) but without a final newline: a last line
                # that is whole JSON is a server that does not terminate it; anything else was cut mid-line.
                try:
                    orjson.loads(pending)
                except orjson.JSONDecodeError:
                    raise self.http.stream_broken(ValueError("body ended mid-line")) from None
                yield pending
