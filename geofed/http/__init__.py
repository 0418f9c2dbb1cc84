"""The upstream HTTP layer (one implementation for all five upstream clients)."""

from geofed.http.auth import Auth, StaticBearer, Token, TokenAuth
from geofed.http.client import HttpPolicy, UpstreamClient
from geofed.http.loop import run_async, run_sync

__all__ = [
    "Auth", "HttpPolicy", "StaticBearer", "Token", "TokenAuth", "UpstreamClient",
    "run_async", "run_sync",
]
