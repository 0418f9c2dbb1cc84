"""Federated item search: fan out to the owning members in parallel, merge-sort, de-duplicate, page.

Each member taking part in a search is one *lane* (`stac_bridge.lanes`), or one lane per collection when it
does not sort as asked (its collections are then independent: each is read, sorted or left out on its own):
- an **exact** lane (`sorts_natively`) is read one native page at a time and k-way merged;
- a **primary** lane (the member orders by the lead sort field only, ties in any order: `sortable`) is
  merged lazily too; before an item whose lead key is k is returned, every primary lane has either ended or
  read an item whose lead key is past k, and ties are ordered here by the full key — exact, and lazy;
- a **native** lane is every lane of a search without `sortby` (STAC leaves that order to the server): one
  per collection, read one native page at a time in its member's own order; the lanes take turns (round robin,
  the turn kept in the token), so the first page costs about one upstream page per collection and is never
  refused for size;
- a **full** lane (the member cannot sort as asked, e.g. Sentinel Hub's Catalog) is read completely, up to
  `GEOFED_FEDERATION_SORT_CAP` matches (the read stops as soon as it passes the cap, and runs under the
  per-member timeout), and sorted here. Over the cap: a 400 naming the member when the client named its
  collections; when it was only included because no `collections` were given, it is left out and the
  answer says so (partial, `federation:missing`, a status block saying how to include it). Its sorted
  matches are memoized for the cache TTL so that later pages do not re-read it (a memo miss re-reads: the
  token never depends on server memory); with Redis the replicas share that memo.

The whole query is evaluated again on every item (`FederatedQuery.matches`), so a member may push down
only part of it. A page is `limit` items long unless the search is over, and a `next` token is only issued
when one more match is known to exist, so no empty page ever carries `next`. A member that fails is
reported (partial answer) and left out of the following pages; the page fails only when every member
failed (or `strict`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import orjson

from geofed import errors, shared
from geofed.query.engine import check_names
from geofed.query.order import SortKey
from stac_bridge.lanes import Lane, LaneKind, SortCapExceeded, failure_dict, item_key, restore_failure, status
from stac_bridge.member import Member
from stac_bridge.registry import Registry, guarded, title, upstream
from stac_bridge.search import FederatedQuery
from stac_bridge.token import TokenSigner, query_hash

MEMBER_PAGE_MAX = 100  # items asked from a member per call, unless it declares `max_page_size`
TOKEN_BUDGET = 6000  # bytes; above it, stashes are replaced by (page, skip) so GET next URLs stay short
MAX_FETCHES_PER_LANE = 200  # member calls one federated page may make per lane before asking for a narrower query
# sorted matches of full lanes kept for the cache TTL, all searches together (≈4 KB each in memory: two lanes at
# the default sort cap of 10 000 fit; a larger memo held ~240 MB after a fuzzing run of distinct searches)
MEMO_ITEMS = 25_000


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
        self._memo_items = 0
        self._reads: dict[tuple[str, str], asyncio.Future[list[tuple[SortKey, dict[str, Any]]]]] = {}

    # ------------------------------------------------------------ routing
    async def _lanes(self, query: FederatedQuery) -> tuple[list[Lane], dict[str, errors.GeofedError]]:
        routed: dict[int, tuple[Member, list[str]]] = {}
        failed: dict[str, errors.GeofedError] = {}
        if query.collections:
            for cid in query.collections:
                member = self.registry.owner(cid)
                routed.setdefault(id(member), (member, []))[1].append(cid)
        else:
            searchable = [m for m in self.registry.members if getattr(m, "searchable", True)]
            found, failed = await self.registry.collections(searchable)
            for member, collection in found:
                routed.setdefault(id(member), (member, []))[1].append(collection["id"])
        named = bool(query.collections)
        lanes: list[Lane] = []
        for member, cids in routed.values():
            if not query.sortby:
                # no order asked: each collection in its member's own order, one native page at a time
                lanes += [Lane(member, [cid], "native", named) for cid in cids]
            elif member.sorts_natively(query.sortby):
                lanes.append(Lane(member, cids, "exact", named))
            else:
                lanes += [Lane(member, [cid], _kind(member, cid, query), named) for cid in cids]
        # a lane whose collections no item of can match (e.g. `collection = 'x'` elsewhere) is not read at all
        return [ln for ln in lanes if not all(query.impossible(c) for c in ln.collections)], failed

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
            failed.update({name: restore_failure(name, f) for name, f in saved.get("failed", {}).items()})
            for lane in lanes:
                lane.restore(saved["lanes"].get(lane.key), query)
        turn = {"next": int(saved.get("rr", 0)) if query.token else 0}  # round-robin position (no sortby)
        first = query.token is None
        out: list[dict[str, Any]] = []
        emitted: set[str] = set()
        more = False
        while True:
            if len(out) == query.limit and any(
                    item_key(item) not in seen and item_key(item) not in emitted
                    for lane in lanes if lane.failure is None for _, item in lane.buffer):
                more = True  # one more match is known: `next` will not lead to an empty page
                break
            lane = await self._next_lane(query, qhash, lanes, turn)
            if lane is None:
                break
            _, item = lane.buffer.popleft()
            lane.consumed += 1
            key = item_key(item)
            if key in seen or key in emitted:
                continue
            if len(out) == query.limit:  # only duplicates were buffered: this is the look-ahead, give it back
                lane.buffer.appendleft((query.sort_key(item), item))
                lane.consumed -= 1
                more = True
                break
            out.append(item)
            emitted.add(key)
        for lane in lanes:
            if lane.failure is not None:
                name = upstream(lane.member)
                if name not in failed or failed[name].status < 500:  # a failure outranks a left-out collection
                    failed[name] = lane.failure
        self._check_failures(query, lanes, failed)
        if first:
            counts = [lane.matched for lane in lanes if lane.failure is None]
            matched = sum(c for c in counts if c is not None) if None not in counts else None
        token = self._token(lanes, emitted, matched, failed, qhash, turn["next"]) if more else None
        return Page(out, token, None if failed else matched, status(lanes, failed, out), sorted(failed))

    async def _next_lane(self, query: FederatedQuery, qhash: str, lanes: list[Lane],
                         turn: dict[str, int]) -> Lane | None:
        """The lane holding the next item in merge order, once that item is certain to be next. Without
        `sortby` there is no merge order: the lanes take turns (round robin, from `turn`), each in its
        member's own order, so that every page is a fixed function of the token."""
        while True:
            await self._fill(query, qhash, lanes)
            heads = [lane for lane in lanes if lane.failure is None and lane.buffer]
            if not heads:
                return None
            if not query.sortby:
                count = len(lanes)
                for step in range(count):
                    index = (turn["next"] + step) % count
                    if lanes[index] in heads:
                        turn["next"] = (index + 1) % count
                        return lanes[index]
            best = min(heads, key=lambda ln: ln.buffer[0][0])
            lead = best.buffer[0][0].lead()
            waiting = [lane for lane in lanes if lane.waits_past(lead)]
            if not waiting:
                return best
            await asyncio.gather(*(self._advance(query, qhash, lane) for lane in waiting))

    def _check_failures(self, query: FederatedQuery, lanes: list[Lane],
                        failed: dict[str, errors.GeofedError]) -> None:
        if not failed:
            return
        alive = any(lane.failure is None for lane in lanes)
        broken = {name: exc for name, exc in failed.items() if exc.status >= 500}
        if not broken:  # only collections left out for being too broad to sort
            if alive and not query.strict:
                return
            raise next(iter(failed.values()))
        if len(broken) == 1 and not alive and len(failed) == 1:
            raise next(iter(broken.values()))  # the only member failed: its own 502/503/504
        if query.strict or not alive:
            names = ", ".join(f"{name} ({exc.message})" for name, exc in sorted(failed.items()))
            why = "strict=true and" if query.strict and alive else "every"
            raise errors.UpstreamError(f"federated search failed: {why} member failed: {names}",
                                       upstream=",".join(sorted(broken)))

    def _token(self, lanes: list[Lane], emitted: set[str], matched: int | None,
               failed: dict[str, errors.GeofedError], qhash: str, turn: int) -> str:
        def encode(stash: set[str]) -> str:
            return self.signer.encode({
                "rr": turn,
                "lanes": {ln.key: ln.to_token(ln.key in stash) for ln in lanes},
                "seen": sorted(emitted), "matched": matched,
                "failed": {name: failure_dict(exc) for name, exc in failed.items()},
            }, qhash)

        # Stash what fits; the biggest stashes give way to re-reading (pages, skip) first.
        stash = {ln.key for ln in lanes if not ln.full and ln.buffer}
        token = encode(stash)
        for lane in sorted(lanes, key=lambda ln: -len(orjson.dumps([item for _, item in ln.buffer]))):
            if len(token) <= self.token_budget:
                break
            stash.discard(lane.key)
            token = encode(stash)
        return token

    # ------------------------------------------------------------ member I/O
    async def _fill(self, query: FederatedQuery, qhash: str, lanes: list[Lane]) -> None:
        """Gives every live lane without a buffered item its next item(s), all lanes in parallel."""
        while hungry := [lane for lane in lanes if lane.hungry()]:
            await asyncio.gather(*(self._advance(query, qhash, lane) for lane in hungry))

    async def _advance(self, query: FederatedQuery, qhash: str, lane: Lane) -> None:
        """Reads a lane on: its next page (added to what it holds), its buffer again, or all its matches."""
        try:
            if lane.full:
                matches = await self._all_matches(query, qhash, lane)
                lane.matched = len(matches)
                lane.buffer = deque(matches[lane.consumed:])
                lane.done, lane.restash = True, False
            elif lane.restash:
                await self._reread(query, lane)
            else:
                await self._read_page(query, lane)
        except errors.GeofedError as exc:
            if exc.status < 500 and not isinstance(exc, errors.UpstreamNotFound):
                if lane.named:
                    raise  # the client's query is wrong for a collection it named: a 400 naming the member
                # Included only because no collections were named (over the sort cap, or a filter on a
                # property this collection lacks, which its upstream refuses): left out, and said so.
                exc.upstream = exc.upstream or upstream(lane.member)
            lane.failure = exc
            lane.buffer.clear()

    async def _check_filter(self, query: FederatedQuery, lane: Lane) -> None:
        """A filter on a property the lane's collections lack can match nothing: a 400 naming it before any
        item is read (members that evaluate the query themselves check it in the engine)."""
        if query.filter is None or getattr(lane.member, "evaluates_query", False):
            return
        for cid in lane.collections:
            fields = await guarded(lane.member, lambda c=cid: lane.member.queryables(c), self.registry.timeout)
            check_names(query.filter, fields, "stac", cid)

    async def _read_page(self, query: FederatedQuery, lane: Lane) -> None:
        if lane.fetches == 0 and lane.state is None:
            await self._check_filter(query, lane)
        lane.fetches += 1
        if lane.fetches > MAX_FETCHES_PER_LANE:
            raise errors.InvalidParameter(
                f"{title(lane.member)} returned too few matching items to fill a page; narrow the query "
                "(bbox, datetime, collections or a filter it supports)", parameter="filter")
        params = query.member_params(lane.collections, _page_size(lane.member, query.limit + 1))
        state = lane.state
        page = await guarded(lane.member, lambda: lane.member.search(params, state), self.registry.timeout)
        if not lane.buffer:  # a fresh buffer: re-reading it starts at this page
            lane.page_state, lane.pages, lane.consumed = state, 0, 0
        lane.pages += 1
        lane.take(query, page.items)
        lane.state, lane.done = page.next, page.next is None
        if lane.fetches == 1 and query.token is None:
            lane.matched = page.matched

    async def _reread(self, query: FederatedQuery, lane: Lane) -> None:
        """Rebuilds a buffer the token did not stash: the same pages again (a member's page is a function of
        its state), minus the items already taken."""
        params = query.member_params(lane.collections, _page_size(lane.member, query.limit + 1))
        state, horizon = lane.page_state, lane.horizon
        for _ in range(max(1, lane.pages)):
            page = await guarded(lane.member, lambda s=state: lane.member.search(params, s), self.registry.timeout)
            lane.take(query, page.items)
            state = page.next
            if state is None:
                break
        for _ in range(min(lane.consumed, len(lane.buffer))):
            lane.buffer.popleft()
        lane.horizon, lane.restash = horizon, False

    async def _all_matches(self, query: FederatedQuery, qhash: str,
                           lane: Lane) -> list[tuple[SortKey, dict[str, Any]]]:
        """A full lane's sorted matches, under the per-member timeout: memoized for the cache TTL, and one
        read per (lane, query) at a time. With caching on, a read that outlives the timeout is not cancelled:
        this page reports the member as timed out, and the read goes on (it stops at the cap) to serve the
        same search on its following pages and repeats (STAC Browser, validators) from the memo."""
        if self.cache_ttl <= 0:
            return await guarded(lane.member, lambda: self._read_all(query, lane), self.registry.timeout)
        memo_key = (lane.key, qhash)
        self._forget_expired()
        cached = self._memo.get(memo_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._reads.get(memo_key)
        if task is None:
            task = asyncio.ensure_future(self._read_shared(query, lane, qhash))
            self._reads[memo_key] = task
            task.add_done_callback(lambda done: self._settle(memo_key, done))
        return await guarded(lane.member, lambda: asyncio.shield(task), self.registry.timeout)

    def _settle(self, memo_key: tuple[str, str], task: asyncio.Future[Any]) -> None:
        self._reads.pop(memo_key, None)
        if task.cancelled() or task.exception() is not None:  # (retrieving it also keeps asyncio quiet)
            return
        matches = task.result()
        replaced = self._memo.pop(memo_key, None)  # re-read after expiry: counted once, and moved to the end
        if replaced is not None:
            self._memo_items -= len(replaced[1])
        self._memo[memo_key] = (time.monotonic() + self.cache_ttl, matches)
        self._memo_items += len(matches)
        while len(self._memo) > 1 and self._memo_items > MEMO_ITEMS:  # bounded memory, oldest out first
            self._forget_oldest()

    def _forget_expired(self) -> None:
        """Entries past the TTL go at once (one TTL for all: the oldest entry expires first), not only when newer
        ones push them out: memory held for nothing would otherwise stay until the memo is full."""
        now = time.monotonic()
        while self._memo and next(iter(self._memo.values()))[0] <= now:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, (_, dropped) = self._memo.popitem(last=False)
        self._memo_items -= len(dropped)

    async def _read_shared(self, query: FederatedQuery, lane: Lane,
                           qhash: str) -> list[tuple[SortKey, dict[str, Any]]]:
        """`_read_all`, shared by the replicas through Redis (`GEOFED_REDIS_URL`) for the cache TTL, up to
        `geofed.shared.MEMO_MAX_BYTES`: a next page served by another replica does not re-read the member."""
        store = shared.current()
        name = "federation:" + hashlib.sha256(f"{lane.key}\0{qhash}".encode()).hexdigest()
        if store is not None and (items := await store.memo_get(name)) is not None:
            return [(query.sort_key(item), item) for item in items]  # stored in order
        matches = await self._read_all(query, lane)
        if store is not None:
            await store.memo_put(name, [item for _, item in matches], self.cache_ttl)
        return matches

    async def _read_all(self, query: FederatedQuery, lane: Lane) -> list[tuple[SortKey, dict[str, Any]]]:
        await self._check_filter(query, lane)
        params = query.member_params(lane.collections, _page_size(lane.member, MEMBER_PAGE_MAX * 5))
        state: Any = None
        found: dict[str, dict[str, Any]] = {}
        scanned = 0
        while True:
            page = await lane.member.search(params, state)
            scanned += len(page.items)
            # Stop as soon as the cap is passed: by the member's own count when it gives one (first page),
            # else by what was read (matches, or items that still had to be read to find them).
            if max(scanned, page.matched or 0) > self.sort_cap:
                raise self._over_cap(lane)
            for item in page.items:
                if query.matches(item):
                    found.setdefault(item_key(item), item)
            if page.next is None or (not page.items and page.next == state):
                break
            state = page.next
        return sorted(((query.sort_key(item), item) for item in found.values()), key=lambda pair: pair[0])

    def _over_cap(self, lane: Lane) -> SortCapExceeded:
        what = f"{title(lane.member)} ({', '.join(lane.collections)})"
        sortable = getattr(lane.member, "sortable", None)
        native = sorted(sortable(lane.collections)) if callable(sortable) else []
        can = (f"it sorts natively by {', '.join(native)} (ascending or descending)" if native
               else "it sorts by no field itself")
        if lane.named:
            return SortCapExceeded(
                f"{what} cannot sort this search itself ({can}) and it has more than {self.sort_cap} matching "
                "items there; sort by a field it sorts on, leave out sortby (its own order), or narrow the query "
                "(bbox, datetime, collections or filter)", parameter="sortby")
        only = lane.collections[0] if len(lane.collections) == 1 else ",".join(lane.collections)
        return SortCapExceeded(
            f"{what} left out: it cannot sort this search itself and it has more than {self.sort_cap} matching "
            f"items, more than geofed sorts to merge them with other members'. To include it, search it on its "
            f"own (collections={only}, without sortby: its own order) or narrow the query (bbox, datetime, "
            "filter)", parameter="collections", upstream=upstream(lane.member))


def _kind(member: Member, collection_id: str, query: FederatedQuery) -> LaneKind:
    """`primary` when the member orders this collection by the lead sort field, else `full`."""
    sortable = getattr(member, "sortable", None)  # optional Member hook (see stac_bridge.member)
    fields = set(sortable([collection_id])) if callable(sortable) else set()
    return "primary" if query.order[0][0] in fields else "full"


def _page_size(member: Member, wanted: int) -> int:
    return max(1, min(wanted, int(getattr(member, "max_page_size", MEMBER_PAGE_MAX))))
