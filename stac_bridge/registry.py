"""The federation's members: who they are, which collection each one owns, and their collections.

Members come from the registry: each enabled upstream's `Upstream.members()` (`providers/<upstream>/stac.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from geofed import errors, registry, upstreams
from geofed.settings import Settings
from stac_bridge.member import Member

LOGGER = logging.getLogger("geofed.stac")
T = TypeVar("T")


def load_members(settings: Settings) -> list[Member]:
    """The members of every enabled upstream (its registry entry's `members()`); one that fails to build is
    logged and left out, so one upstream's bug cannot take the whole STAC API down."""
    found: list[Member] = []
    for name in upstreams.enabled(settings):
        declared = registry.get(name).members
        if declared is None:
            continue
        try:
            found.extend(declared())
        except Exception:
            LOGGER.exception("STAC members of %s could not be loaded", name)
    return found


def upstream(member: Member) -> str:
    """The upstream a member talks to (its `upstream` attribute when its `name` is not the upstream's)."""
    return str(getattr(member, "upstream", None) or member.name)


def title(member: Member) -> str:
    """The upstream's human name, for error messages."""
    return upstreams.title(upstream(member))


async def guarded(member: Member, call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Runs one member call under the per-member timeout; anything but a geofed error becomes a 502 that
    names the member (and is logged), so that one member's bug is one member's failure."""
    try:
        return await asyncio.wait_for(call(), timeout)
    except TimeoutError:
        raise errors.UpstreamTimeout(
            f"{title(member)} did not answer within the federation timeout ({timeout:g} s)",
            upstream=upstream(member),
        ) from None
    except errors.GeofedError as exc:
        if exc.upstream is None and exc.status >= 500:
            exc.upstream = upstream(member)
        raise
    except Exception:
        LOGGER.exception("STAC member %s failed", member.name)
        raise errors.UpstreamError(f"{title(member)}: internal error in geofed's member; see the server log",
                                   upstream=upstream(member)) from None


class Registry:
    def __init__(self, members: list[Member], timeout: float, cache_ttl: float) -> None:
        self.members = members
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._collections: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def owner(self, collection_id: str) -> Member:
        """The member owning a collection; 404 at once (no upstream call) when nobody does."""
        for member in self.members:
            if member.owns(collection_id):
                return member
        raise errors.NotFound(f"collection '{collection_id}' does not exist")

    async def member_collections(self, member: Member) -> list[dict[str, Any]]:
        cached = self._collections.get(member.name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await guarded(member, member.collections, self.timeout)
        if self.cache_ttl > 0:  # only successes are cached: a failed listing is retried on the next call
            self._collections[member.name] = (time.monotonic() + self.cache_ttl, found)
        return found

    async def collections(
        self, members: list[Member] | None = None
    ) -> tuple[list[tuple[Member, dict[str, Any]]], dict[str, errors.GeofedError]]:
        """Every member's collections, asked in parallel: (member, collection) pairs and failures by member."""
        members = self.members if members is None else members
        results = await asyncio.gather(*(self.member_collections(m) for m in members), return_exceptions=True)
        found: list[tuple[Member, dict[str, Any]]] = []
        failed: dict[str, errors.GeofedError] = {}
        for member, result in zip(members, results, strict=True):
            if isinstance(result, errors.GeofedError):
                failed[upstream(member)] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend((member, c) for c in result)
        return found, failed

    async def collection(self, collection_id: str) -> tuple[Member, dict[str, Any]]:
        member = self.owner(collection_id)
        for collection in await self.member_collections(member):
            if collection.get("id") == collection_id:
                return member, collection
        raise errors.NotFound(f"collection '{collection_id}' does not exist")
