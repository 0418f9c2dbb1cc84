"""One lane of a federated search: what the bridge holds of one member (or one member's collection).

A lane's *kind* says how its items may be merged:
- `exact`   — the member returns items in exactly the requested order (`sorts_natively`): merge lazily;
- `primary` — the member orders by the lead sort field only, ties in any order (`sortable`): merge lazily,
  but an item whose lead key is k is only returned once every such lane has shown an item past k (or ended),
  so that ties are ordered here by the full key;
- `native`  — a lane of a search without `sortby`: no merge, the member's own order, lanes take turns;
- `full`    — the member cannot sort as asked: all its matches are read (up to the cap) and sorted here.

Everything a lane needs on the next page travels in the signed token (`to_token` / `restore`): the member's
native paging state, and either the fetched-but-not-returned items (the stash) or how to read them again
(the state of the first buffered page, how many pages, how many items were already taken).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from geofed import errors
from geofed.query.order import SortKey
from stac_bridge.member import Member
from stac_bridge.registry import upstream
from stac_bridge.search import FederatedQuery

LaneKind = Literal["exact", "primary", "native", "full"]


class SortCapExceeded(errors.InvalidParameter):
    """A member that cannot sort as asked has more matches than the bridge sorts (400, or left out)."""


@dataclass
class Lane:
    member: Member
    collections: list[str]
    kind: LaneKind
    named: bool = True  # the client named these collections (else: included because none were named)
    state: Any = None  # native paging state of the member's next page
    done: bool = False  # no native page left
    buffer: deque[tuple[SortKey, dict[str, Any]]] = field(default_factory=deque)  # fetched, matching, in order
    page_state: Any = None  # state of the first page the buffer was read from (to re-read instead of stashing)
    pages: int = 0  # how many pages, from `page_state` on, the buffer was read from
    consumed: int = 0  # items taken from those pages' matches, in merge order (full lanes: of all matches)
    horizon: SortKey | None = None  # primary lanes: lead key of the furthest item the member returned
    restash: bool = False  # the buffer must be rebuilt by re-reading `pages` pages from `page_state`
    failure: errors.GeofedError | None = None
    matched: int | None = None
    fetches: int = 0

    @property
    def key(self) -> str:
        return f"{self.member.name}:{','.join(sorted(self.collections))}"

    @property
    def full(self) -> bool:
        return self.kind == "full"

    def hungry(self) -> bool:
        return self.failure is None and not self.buffer and (not self.done or self.restash)

    def waits_past(self, lead: SortKey) -> bool:
        """A primary lane that may still return an item whose lead key ties with `lead`."""
        if self.kind != "primary" or self.failure is not None or self.done:
            return False
        return self.horizon is None or not lead < self.horizon

    def take(self, query: FederatedQuery, items: list[dict[str, Any]]) -> None:
        """Adds one member page: the horizon moves on, the matches join the buffer in merge order."""
        keyed = [(query.sort_key(item), item) for item in items]
        if self.kind == "primary" and keyed:
            furthest = max((k.lead() for k, _ in keyed))
            self.horizon = furthest if self.horizon is None or self.horizon < furthest else self.horizon
        # a member that evaluated the whole query itself (geofed's own sources, through the engine) is not
        # filtered a second time
        exact = getattr(self.member, "evaluates_query", False)
        kept = keyed if exact else [(k, item) for k, item in keyed if query.matches(item)]
        if self.kind == "native":
            self.buffer.extend(kept)
        else:
            # Items taken so far precede every item read since (a lane is only taken from past its ties),
            # so re-sorting the buffer with the new page keeps `consumed` a prefix of the pages' matches.
            self.buffer = deque(sorted([*self.buffer, *kept], key=lambda pair: pair[0]))

    def to_token(self, stash: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.state, "d": self.done, "p": self.page_state, "g": self.pages,
                               "k": self.consumed}
        if self.horizon is not None:
            out["h"] = self.horizon.values[0]
        if self.failure is not None:
            out["f"] = failure_dict(self.failure)
        elif self.full or not stash:
            out["r"] = bool(self.buffer) or self.restash
        else:
            out["b"] = [item for _, item in self.buffer]
        return out

    def restore(self, saved: dict[str, Any] | None, query: FederatedQuery) -> None:
        if saved is None:  # not in the token: the lane had nothing left
            self.done = True
            return
        self.state, self.done, self.page_state = saved["n"], saved["d"], saved["p"]
        self.pages, self.consumed = int(saved.get("g", 1)), int(saved["k"])
        if "h" in saved:
            self.horizon = SortKey((saved["h"],), query.order[:1])
        if "f" in saved:
            self.failure = restore_failure(upstream(self.member), saved["f"])
        elif "b" in saved:
            self.buffer = deque((query.sort_key(item), item) for item in saved["b"])
        else:
            self.restash = bool(saved.get("r"))
            if self.full:
                self.done = not self.restash


def item_key(item: dict[str, Any]) -> str:
    raw = f"{item.get('collection')}\x1f{item.get('id')}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def failure_dict(exc: errors.GeofedError) -> dict[str, Any]:
    return {"status_code": exc.status, "code": exc.code, "error": exc.message}


def restore_failure(name: str, saved: dict[str, Any]) -> errors.GeofedError:
    if int(saved["status_code"]) < 500:  # left out (too broad to sort, or the query is not for it)
        return SortCapExceeded(str(saved["error"]), parameter="collections", upstream=name)
    exc = errors.UpstreamError(f"{saved['error']} (failed on an earlier page of this search)", upstream=name)
    exc.status, exc.code = int(saved["status_code"]), str(saved["code"])
    return exc


def status(lanes: list[Lane], failed: dict[str, errors.GeofedError],
           items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per upstream: ok with the number of its items on this page, failed with why, or omitted with why and
    how to include it (a member too broad to sort in a search that did not name it)."""
    owner = {c: upstream(lane.member) for lane in lanes for c in lane.collections}
    returned: dict[str, int] = {upstream(lane.member): 0 for lane in lanes if lane.failure is None}
    for item in items:
        name = owner.get(str(item.get("collection")))
        if name in returned:
            returned[name] += 1
    out: dict[str, dict[str, Any]] = {name: {"status": "ok", "returned": n} for name, n in returned.items()}
    for name, exc in failed.items():
        block = {"status": "omitted" if exc.status < 500 else "failed", **failure_dict(exc)}
        if name in returned:  # another of its collections did answer
            block["returned"] = returned[name]
        out[name] = block
    return out
