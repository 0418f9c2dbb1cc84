"""Federated item search: fan out to the owning members in parallel, merge-sort, de-duplicate, page.

Each member taking part in a search is a *lane*:
- a **lazy** lane (the member sorts as asked, `sorts_natively`) is read one native page at a time and
  k-way merged: an item is returned only when every live lane has shown its next item;
- a **full** lane (the member cannot sort as asked, e.g. Sentinel Hub's Catalog) is read completely, up to
  `GEOFED_FEDERATION_SORT_CAP` matches, and sorted here; over the cap → 400 naming the member. Its sorted
  matches are memoized for the cache TTL so that later pages do not re-read it (a memo miss re-reads:
  the token never depends on server memory).

The whole query is evaluated again on every item (`FederatedQuery.matches`), so a member may push down
only part of it. A page is `limit` items long unless the search is over, and a `next` token is only
issued when at least one more match is known to exist (the look-ahead item stays in its lane), so no
empty page ever carries `next`. A member that fails is reported (partial answer) and left out of the
following pages; the page fails only when every member failed (or `strict`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from geofed import errors
from stac_bridge.member import Member
from stac_bridge.registry import Registry, guarded, title, upstream
from stac_bridge.search import FederatedQuery, SortKey
from stac_bridge.token import TokenSigner, query_hash

MEMBER_PAGE_MAX = 100  # items asked from a member per call, unless it declares `max_page_size`
TOKEN_BUDGET = 6000  # bytes; above it, stashes are replaced by (page, skip) so GET next URLs stay short
MAX_FETCHES_PER_LANE = 200  # member calls one federated page may make per lane before asking for a narrower query


@dataclass
class Lane:
    member: Member
    collections: list[str]
    full: bool
    state: Any = None  # native paging state of the member's next page
    done: bool = False  # no native page left
    buffer: deque[tuple[SortKey, dict[str, Any]]] = field(default_factory=deque)  # fetched, sorted, not returned
    page_state: Any = None  # state that produced the buffer's page (to re-read it instead of stashing)
    consumed: int = 0  # items taken from the buffer's page (full lanes: from the sorted matches)
    restash: bool = False  # the buffer must be rebuilt by re-reading `page_state`
    failure: errors.GeofedError | None = None
    matched: int | None = None
    fetches: int = 0

    @property
    def live(self) -> bool:
        return self.failure is None and (bool(self.buffer) or not self.done or self.restash)

    def to_token(self, stash: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.state, "d": self.done, "p": self.page_state, "k": self.consumed}
        if self.failure is not None:
            out["f"] = _failure(self.failure)
        elif self.full or not stash:
            out["r"] = bool(self.buffer) or self.restash
        else:
            out["b"] = [item for _, item in self.buffer]
        return out


@dataclass
class Page:
    items: list[dict[str, Any]]
    token: str | None
    matched: int | None
    members: dict[str, dict[str, Any]]  # upstream name → status block
    missing: list[str]

    @property
    def partial(self) -> bool:
        return bool(self.missing)


class Federation:
    def __init__(self, registry: Registry, signer: TokenSigner, sort_cap: int, cache_ttl: float,
                 token_budget: int = TOKEN_BUDGET) -> None:
        self.registry = registry
        self.token_budget = token_budget
        self.signer = signer
        self.sort_cap = sort_cap
        self.cache_ttl = cache_ttl
        self._memo: OrderedDict[tuple[str, str], tuple[float, list[tuple[SortKey, dict[str, Any]]]]] = OrderedDict()

    # ------------------------------------------------------------ routing
    async def _lanes(self, query: FederatedQuery) -> tuple[list[Lane], dict[str, errors.GeofedError]]:
        routed: dict[str, tuple[Member, list[str]]] = {}
        failed: dict[str, errors.GeofedError] = {}
        if query.collections:
            for cid in query.collections:
                member = self.registry.owner(cid)
                routed.setdefault(member.name + repr(id(member)), (member, []))[1].append(cid)
        else:
            searchable = [m for m in self.registry.members if getattr(m, "searchable", True)]
            found, failed = await self.registry.collections(searchable)
            for member, collection in found:
                routed.setdefault(member.name + repr(id(member)), (member, []))[1].append(collection["id"])
        lanes = [Lane(m, cids, full=not m.sorts_natively(query.sortby)) for m, cids in routed.values()]
        return lanes, failed

    # ------------------------------------------------------------ one page
    async def page(self, query: FederatedQuery) -> Page:
        qhash = query_hash(query.normalized())
        lanes, failed = await self._lanes(query)
        seen: set[str] = set()
        matched: int | None = None
        if query.token:
            saved = self.signer.decode(query.token, qhash)
            seen = set(saved.get("seen", ()))
            matched = saved.get("matched")
            failed.update({name: _restore_failure(name, f) for name, f in saved.get("failed", {}).items()})
            for lane in lanes:
                _restore(lane, saved["lanes"].get(_lane_key(lane)), query)
        first = query.token is None
        out: list[dict[str, Any]] = []
        emitted: set[str] = set()
        while True:
            await self._fill(query, qhash, lanes)
            heads = [lane for lane in lanes if lane.failure is None and lane.buffer]
            if not heads:
                break
            lane = min(heads, key=lambda ln: ln.buffer[0][0])
            head = lane.buffer.popleft()
            item = head[1]
            lane.consumed += 1
            if not lane.full and not query.matches(item):
                continue
            key = _item_key(item)
            if key in seen or key in emitted:
                continue
            if len(out) == query.limit:  # one match beyond the page exists: give it back, issue `next`
                lane.buffer.appendleft(head)
                lane.consumed -= 1
                break
            out.append(item)
            emitted.add(key)
        failed.update({upstream(lane.member): lane.failure for lane in lanes if lane.failure is not None})
        self._check_failures(query, lanes, failed, out)
        if first:
            counts = [lane.matched for lane in lanes if lane.failure is None]
            matched = sum(c for c in counts if c is not None) if None not in counts else None
        more = len(out) == query.limit and any(lane.live and lane.buffer for lane in lanes)
        token = self._token(lanes, emitted, matched, failed, qhash) if more else None
        return Page(out, token, None if failed else matched, _status(lanes, failed, out), sorted(failed))

    def _check_failures(self, query: FederatedQuery, lanes: list[Lane], failed: dict[str, errors.GeofedError],
                        out: list[dict[str, Any]]) -> None:
        if not failed:
            return
        if len(failed) == 1 and not any(lane.failure is None for lane in lanes):
            raise next(iter(failed.values()))  # the only member failed: its own 502/503/504
        if query.strict or not any(lane.failure is None for lane in lanes):
            names = ", ".join(f"{name} ({exc.message})" for name, exc in sorted(failed.items()))
            why = "strict=true and" if query.strict and any(ln.failure is None for ln in lanes) else "every"
            raise errors.UpstreamError(f"federated search failed: {why} member failed: {names}",
                                       upstream=",".join(sorted(failed)))

    def _token(self, lanes: list[Lane], emitted: set[str], matched: int | None,
               failed: dict[str, errors.GeofedError], qhash: str) -> str:
        def encode(stash: set[str]) -> str:
            return self.signer.encode({
                "lanes": {_lane_key(ln): ln.to_token(_lane_key(ln) in stash) for ln in lanes},
                "seen": sorted(emitted), "matched": matched,
                "failed": {name: _failure(exc) for name, exc in failed.items()},
            }, qhash)

        # Stash what fits; the biggest stashes give way to re-reading (page, skip) first.
        stash = {_lane_key(ln) for ln in lanes if not ln.full and ln.buffer}
        token = encode(stash)
        for lane in sorted(lanes, key=lambda ln: -len(orjson.dumps([item for _, item in ln.buffer]))):
            if len(token) <= self.token_budget:
                break
            stash.discard(_lane_key(lane))
            token = encode(stash)
        return token

    # ------------------------------------------------------------ member I/O
    async def _fill(self, query: FederatedQuery, qhash: str, lanes: list[Lane]) -> None:
        """Gives every live lane without a buffered item its next item(s), all lanes in parallel."""
        while True:
            hungry = [ln for ln in lanes if ln.failure is None and not ln.buffer and (not ln.done or ln.restash)]
            if not hungry:
                return
            await asyncio.gather(*(self._advance(query, qhash, lane) for lane in hungry))

    async def _advance(self, query: FederatedQuery, qhash: str, lane: Lane) -> None:
        try:
            if lane.full:
                matches = await guarded(lane.member, lambda: self._read_all(query, qhash, lane),
                                        self.registry.timeout)
                lane.matched = len(matches)
                lane.buffer = deque(matches[lane.consumed:])
                lane.done, lane.restash = True, False
                return
            lane.fetches += 1
            if lane.fetches > MAX_FETCHES_PER_LANE:
                raise errors.InvalidParameter(
                    f"{title(lane.member)} returned too few matching items to fill a page; narrow the query "
                    "(bbox, datetime, collections or a filter it supports)", parameter="filter")
            state = lane.page_state if lane.restash else lane.state
            params = query.member_params(lane.collections, _page_size(lane.member, query.limit + 1))
            page = await guarded(lane.member, lambda: lane.member.search(params, state), self.registry.timeout)
            items = _keyed(query, page.items)  # within a page, order is ours to guarantee
            if lane.restash:
                lane.buffer = deque(items[lane.consumed:])
                lane.restash = False
                return
            lane.page_state, lane.consumed = lane.state, 0
            lane.buffer = deque(items)
            lane.state, lane.done = page.next, page.next is None
            if lane.fetches == 1 and query.token is None:
                lane.matched = page.matched
        except errors.GeofedError as exc:
            if exc.status < 500 and not isinstance(exc, errors.UpstreamNotFound):
                raise  # the client's query is wrong for this member: a 400 naming it, not a partial answer
            lane.failure = exc
            lane.buffer.clear()

    async def _read_all(self, query: FederatedQuery, qhash: str, lane: Lane) -> list[tuple[SortKey, dict[str, Any]]]:
        memo_key = (f"{lane.member.name}:{','.join(sorted(lane.collections))}", qhash)
        cached = self._memo.get(memo_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        params = query.member_params(lane.collections, _page_size(lane.member, MEMBER_PAGE_MAX * 5))
        state: Any = None
        found: dict[str, dict[str, Any]] = {}
        scanned = 0
        while True:
            page = await lane.member.search(params, state)
            scanned += len(page.items)
            for item in page.items:
                if query.matches(item):
                    found.setdefault(_item_key(item), item)
            if len(found) > self.sort_cap or scanned > 20 * self.sort_cap:
                raise errors.InvalidParameter(
                    f"{title(lane.member)} cannot sort this search itself and it matches more than "
                    f"{self.sort_cap} items there; narrow the query (bbox, datetime, collections or filter)",
                    parameter="collections")
            if page.next is None or (not page.items and page.next == state):
                break
            state = page.next
        matches = _keyed(query, list(found.values()))
        if self.cache_ttl > 0:
            self._memo[memo_key] = (time.monotonic() + self.cache_ttl, matches)
            while len(self._memo) > 64:
                self._memo.popitem(last=False)
        return matches


# ------------------------------------------------------------------ token helpers
def _lane_key(lane: Lane) -> str:
    return f"{lane.member.name}:{','.join(sorted(lane.collections))}"


def _keyed(query: FederatedQuery, items: list[dict[str, Any]]) -> list[tuple[SortKey, dict[str, Any]]]:
    return sorted(((query.sort_key(item), item) for item in items), key=lambda pair: pair[0])


def _restore(lane: Lane, saved: dict[str, Any] | None, query: FederatedQuery) -> None:
    if saved is None:  # not in the token: the lane had nothing left
        lane.done = True
        return
    lane.state, lane.done, lane.page_state, lane.consumed = saved["n"], saved["d"], saved["p"], saved["k"]
    if "f" in saved:
        lane.failure = _restore_failure(upstream(lane.member), saved["f"])
    elif "b" in saved:
        lane.buffer = deque((query.sort_key(item), item) for item in saved["b"])
    else:
        lane.restash = bool(saved.get("r"))
        if lane.full:
            lane.done = not lane.restash


def _page_size(member: Member, wanted: int) -> int:
    return max(1, min(wanted, int(getattr(member, "max_page_size", MEMBER_PAGE_MAX))))


def _item_key(item: dict[str, Any]) -> str:
    raw = f"{item.get('collection')}\x1f{item.get('id')}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _failure(exc: errors.GeofedError) -> dict[str, Any]:
    return {"status_code": exc.status, "code": exc.code, "error": exc.message}


def _restore_failure(name: str, saved: dict[str, Any]) -> errors.GeofedError:
    exc = errors.UpstreamError(f"{saved['error']} (failed on an earlier page of this search)", upstream=name)
    exc.status, exc.code = int(saved["status_code"]), str(saved["code"])
    return exc


def _status(lanes: list[Lane], failed: dict[str, errors.GeofedError],
            items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per upstream: ok with the number of its items on this page, or failed with why."""
    owner = {c: upstream(lane.member) for lane in lanes for c in lane.collections}
    out: dict[str, dict[str, Any]] = {}
    for lane in lanes:
        if lane.failure is None and upstream(lane.member) not in failed:
            out.setdefault(upstream(lane.member), {"status": "ok", "returned": 0})
    for item in items:
        name = owner.get(str(item.get("collection")))
        if name in out:
            out[name]["returned"] += 1
    for name, exc in failed.items():
        out[name] = {"status": "failed", **_failure(exc)}
    return out
