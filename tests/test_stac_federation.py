"""The federation engine on its own, with in-process members over fixed item lists.

The end-to-end tests (test_stac_bridge.py) drive the real server over the simulators; these pin down the
merge, paging, stash and failure rules exactly, including cases the simulators cannot produce on demand
(a member returning duplicates, a member ignoring the filter, a token too large to stash).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from geofed import errors
from stac_bridge.federation import Federation
from stac_bridge.member import MemberPage, SearchParams, SortBy
from stac_bridge.registry import Registry
from stac_bridge.search import FederatedQuery
from stac_bridge.token import TokenSigner

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NEWEST = ["-datetime"]  # an explicit order: without sortby the federation promises none (lanes take turns)


def item(collection: str, n: int, hours: int, cloud: float = 0.0) -> dict[str, Any]:
    when = (T0 + dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    return {"type": "Feature", "stac_version": "1.1.0", "id": f"{collection}-{n}", "collection": collection,
            "geometry": {"type": "Point", "coordinates": [n % 50, n % 40]}, "bbox": [n % 50, n % 40] * 2,
            "properties": {"datetime": when, "cloud": cloud}, "links": [], "assets": {}}


class ListMember:
    """Pages through fixed items by offset. `sorts`: "exact" returns them in the default order (ties by
    collection, id), "lead" orders by datetime only with ties in *reverse* id order (and says so through
    `sortable`), "none" keeps the list's order. `delay` seconds per call; `reports_matched` toggles counts."""

    def __init__(self, name: str, items: list[dict[str, Any]], sorts: bool | str = True, page: int = 4,
                 failure: errors.GeofedError | None = None, delay: float = 0.0,
                 reports_matched: bool = True) -> None:
        self.name = name
        self.items = items
        self.sorts = {True: "exact", False: "none"}.get(sorts, sorts) if isinstance(sorts, bool) else sorts
        self.max_page_size = page
        self.failure = failure
        self.delay = delay
        self.reports_matched = reports_matched
        self.calls = 0

    async def collections(self) -> list[dict[str, Any]]:
        return [{"id": c} for c in sorted({i["collection"] for i in self.items})]

    def owns(self, collection_id: str) -> bool:
        return any(i["collection"] == collection_id for i in self.items)

    def sorts_natively(self, sortby: SortBy) -> bool:
        return self.sorts == "exact" and sortby == [("datetime", "desc")]

    def sortable(self, collections: list[str]) -> set[str]:
        return {"datetime"} if self.sorts == "lead" else set()

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        self.calls += 1
        self.last = params
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        offset = int(state or 0)
        chosen = [i for i in self.items if i["collection"] in params.collections]
        if self.sorts == "exact":
            chosen.sort(key=lambda i: (i["collection"], i["id"]))
            chosen.sort(key=lambda i: i["properties"]["datetime"], reverse=True)
        elif self.sorts == "lead":
            descending = not params.sortby or params.sortby[0] == ("datetime", "desc")
            chosen.sort(key=lambda i: (i["properties"]["datetime"], i["id"]), reverse=descending)
        page = chosen[offset:offset + params.limit]
        more = offset + params.limit < len(chosen)
        return MemberPage(page, offset + params.limit if more else None,
                          len(chosen) if self.reports_matched else None)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        raise errors.NotFound("no")

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return {name: {} for i in self.items if i["collection"] == collection_id for name in i["properties"]}


def federation(*members: ListMember, budget: int = 6000, cap: int = 10_000, timeout: float = 5) -> Federation:
    registry = Registry(list(members), timeout=timeout, cache_ttl=0)
    return Federation(registry, TokenSigner(b"k" * 32), sort_cap=cap, cache_ttl=0, token_budget=budget)


def every_page(fed: Federation, **query: Any) -> list[list[dict[str, Any]]]:
    pages, token = [], None
    while True:
        page = asyncio.run(fed.page(FederatedQuery.from_request(**query, token=token)))
        pages.append(page.items)
        assert page.items or page.token is None, "an empty page must not carry a next token"
        token = page.token
        if token is None:
            return pages


def default_order(items: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(items, key=lambda i: (i["collection"], i["id"]))
    ordered.sort(key=lambda i: i["properties"]["datetime"], reverse=True)
    return [f"{i['collection']}/{i['id']}" for i in ordered]


def three_members() -> tuple[ListMember, ListMember, ListMember, list[dict[str, Any]]]:
    a = [item("a", n, hours=3 * n) for n in range(13)]
    b = [item("b", n, hours=2 * n + 1) for n in range(11)]
    c = [item("c", n, hours=5 * n) for n in range(9)]  # shares instants with a: ties broken by collection
    return ListMember("alpha", a), ListMember("beta", b), ListMember("gamma", c, sorts=False), a + b + c


@pytest.mark.parametrize("budget", [6000, 0], ids=["stash", "re-read"])
def test_merge_returns_every_item_once_in_order(budget: int) -> None:
    a, b, c, everything = three_members()
    pages = every_page(federation(a, b, c, budget=budget), limit=5, sortby=NEWEST)
    got = [f"{i['collection']}/{i['id']}" for page in pages for i in page]
    assert got == default_order(everything)
    assert [len(p) for p in pages[:-1]] == [5] * (len(pages) - 1)


def test_sortby_reads_non_sorting_members_fully_and_sorts() -> None:
    a = [item("a", n, hours=n, cloud=(n * 7) % 10) for n in range(12)]
    b = [item("b", n, hours=n, cloud=(n * 3) % 10) for n in range(12)]
    pages = every_page(federation(ListMember("alpha", a), ListMember("beta", b)), limit=7,
                       sortby=["+cloud", "-datetime"])
    got = [i for page in pages for i in page]
    keys = [(i["properties"]["cloud"], -T0.timestamp()) for i in got]
    assert len(got) == 24 and len({(i["collection"], i["id"]) for i in got}) == 24
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)


def test_duplicates_and_local_filter() -> None:
    a = [item("a", n, hours=n, cloud=n % 3) for n in range(10)]
    dup = ListMember("alpha", [*a, dict(a[4])])  # the member repeats an item
    pages = every_page(federation(dup), limit=3, filter_expr="cloud = 1", filter_lang="cql2-text", sortby=NEWEST)
    got = [i["id"] for page in pages for i in page]
    assert got == [i["id"] for i in reversed(a) if i["properties"]["cloud"] == 1]


def test_partial_and_strict_and_all_failed() -> None:
    a, b, _, _ = three_members()
    down = ListMember("gamma", [item("c", 1, 1)], failure=errors.UpstreamUnavailable("Gamma failed (HTTP 503)"))
    fed = federation(a, b, down)
    page = asyncio.run(fed.page(FederatedQuery.from_request(limit=4)))
    assert page.partial and page.missing == ["gamma"]
    assert page.members["gamma"]["status"] == "failed" and page.members["gamma"]["status_code"] == 503
    assert len(page.items) == 4
    # the failure is remembered on the next page
    nxt = asyncio.run(fed.page(FederatedQuery.from_request(limit=4, token=page.token)))
    assert nxt.missing == ["gamma"]
    with pytest.raises(errors.UpstreamError):
        asyncio.run(fed.page(FederatedQuery.from_request(limit=4, strict=True)))
    only_down = federation(down)
    with pytest.raises(errors.UpstreamUnavailable):
        asyncio.run(only_down.page(FederatedQuery.from_request(limit=4)))


def test_token_is_signed_and_bound_to_its_query() -> None:
    a, b, c, _ = three_members()
    fed = federation(a, b, c)
    token = asyncio.run(fed.page(FederatedQuery.from_request(limit=3))).token
    assert token
    payload, _, signature = token.partition(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    for bad in (tampered, token[:-3], "garbage", token.replace(".", "")):
        with pytest.raises(errors.InvalidParameter) as caught:
            asyncio.run(fed.page(FederatedQuery.from_request(limit=3, token=bad)))
        assert caught.value.parameter == "token"
    with pytest.raises(errors.InvalidParameter):  # same token, another query
        asyncio.run(fed.page(FederatedQuery.from_request(limit=3, ids=["a-1"], token=token)))
    foreign = Federation(fed.registry, TokenSigner(b"x" * 32), 10_000, 0)
    with pytest.raises(errors.InvalidParameter):
        asyncio.run(foreign.page(FederatedQuery.from_request(limit=3, token=token)))


def ties() -> tuple[ListMember, ListMember, ListMember, list[dict[str, Any]]]:
    """Two lead-sorting members whose instants repeat (three items an hour) and tie across members and pages."""
    a = [item("a", n, hours=n // 3) for n in range(17)]
    b = [item("b", n, hours=n // 3) for n in range(14)]
    c = [item("c", n, hours=n // 2) for n in range(9)]
    return ListMember("alpha", a, sorts="lead", page=2), ListMember("beta", b, sorts="lead", page=3), \
        ListMember("gamma", c, sorts=False), a + b + c


@pytest.mark.parametrize("budget", [6000, 0], ids=["stash", "re-read"])
@pytest.mark.parametrize("limit", [1, 4, 7])
def test_members_sorting_on_the_lead_key_merge_lazily_and_exactly(budget: int, limit: int) -> None:
    a, b, c, everything = ties()
    pages = every_page(federation(a, b, c, budget=budget), limit=limit, sortby=NEWEST)
    got = [f"{i['collection']}/{i['id']}" for page in pages for i in page]
    assert got == default_order(everything)
    assert [len(p) for p in pages[:-1]] == [limit] * (len(pages) - 1)


def test_lead_sorting_member_is_read_only_as_far_as_the_page_needs() -> None:
    a = ListMember("alpha", [item("a", n, hours=n // 3) for n in range(300)], sorts="lead", page=5)
    b = ListMember("beta", [item("b", n, hours=n) for n in range(300)], sorts="lead", page=5)
    page = asyncio.run(federation(a, b).page(FederatedQuery.from_request(limit=5, sortby=NEWEST)))
    assert [i["id"] for i in page.items] == ["b-299", "b-298", "b-297", "b-296", "b-295"]
    assert page.matched == 600 and page.token
    assert a.calls + b.calls <= 4, "a lazy merge reads a page or two per member, not 120 pages"
    # ascending on the lead key works the same way
    up = asyncio.run(federation(a, b).page(FederatedQuery.from_request(limit=4, sortby=["+datetime"])))
    assert [i["id"] for i in up.items] == ["a-0", "a-1", "a-2", "b-0"]


def test_over_the_sort_cap_is_a_400_naming_the_member_when_named() -> None:
    c = ListMember("gamma", [item("c", n, n) for n in range(30)], sorts=False)
    a = ListMember("alpha", [item("a", n, n) for n in range(5)])
    for query in ({"collections": ["c", "a"]}, {"collections": ["c"]}):
        with pytest.raises(errors.InvalidParameter) as caught:
            asyncio.run(federation(c, a, cap=20).page(FederatedQuery.from_request(limit=5, sortby=NEWEST, **query)))
        assert "gamma" in caught.value.message and "narrow" in caught.value.message


def test_over_the_sort_cap_unnamed_is_left_out_and_said_so() -> None:
    c = ListMember("gamma", [item("c", n, n) for n in range(30)], sorts=False)
    a = ListMember("alpha", [item("a", n, n) for n in range(7)])
    fed = federation(c, a, cap=20)
    page = asyncio.run(fed.page(FederatedQuery.from_request(limit=5, sortby=NEWEST)))
    assert page.partial and page.missing == ["gamma"] and page.matched is None
    block = page.members["gamma"]
    assert block["status"] == "omitted" and "20" in block["error"] and "collections=c" in block["error"]
    assert [i["id"] for i in page.items] == ["a-6", "a-5", "a-4", "a-3", "a-2"]
    nxt = asyncio.run(fed.page(FederatedQuery.from_request(limit=5, sortby=NEWEST, token=page.token)))
    assert [i["id"] for i in nxt.items] == ["a-1", "a-0"] and nxt.missing == ["gamma"]
    with pytest.raises(errors.InvalidParameter):  # strict: nothing may be left out
        asyncio.run(fed.page(FederatedQuery.from_request(limit=5, sortby=NEWEST, strict=True)))
    with pytest.raises(errors.InvalidParameter):  # nothing left at all: the 400 itself
        asyncio.run(federation(c, cap=20).page(FederatedQuery.from_request(limit=5, sortby=["-datetime"])))


@pytest.mark.parametrize("reports_matched", [True, False])
def test_reading_a_non_sorting_member_stops_at_the_cap(reports_matched: bool) -> None:
    c = ListMember("gamma", [item("c", n, n) for n in range(1000)], sorts=False, page=10,
                   reports_matched=reports_matched)
    a = ListMember("alpha", [item("a", n, n) for n in range(5)])
    page = asyncio.run(federation(c, a, cap=25).page(FederatedQuery.from_request(limit=5, sortby=NEWEST)))
    assert page.missing == ["gamma"]
    assert c.calls == (1 if reports_matched else 3), "read one page past the cap at most"


def test_a_non_sorting_member_slower_than_the_timeout_is_a_failure() -> None:
    slow = ListMember("gamma", [item("c", n, n) for n in range(40)], sorts=False, page=10, delay=0.3)
    a = ListMember("alpha", [item("a", n, n) for n in range(5)])
    page = asyncio.run(federation(slow, a, timeout=0.5).page(FederatedQuery.from_request(limit=5, sortby=NEWEST)))
    assert page.missing == ["gamma"] and page.members["gamma"]["status"] == "failed"
    assert page.members["gamma"]["status_code"] == 504 and len(page.items) == 5


def test_a_timed_out_full_read_goes_on_and_serves_the_same_search_again() -> None:
    slow = ListMember("gamma", [item("c", n, 2 * n) for n in range(40)], sorts=False, page=10, delay=0.2)
    a = ListMember("alpha", [item("a", n, 2 * n + 1) for n in range(5)])
    registry = Registry([slow, a], timeout=0.5, cache_ttl=60)
    fed = Federation(registry, TokenSigner(b"k" * 32), sort_cap=10_000, cache_ttl=60)

    async def twice() -> tuple[Any, Any, int]:
        first = await fed.page(FederatedQuery.from_request(limit=5, sortby=NEWEST))
        await asyncio.sleep(0.8)  # the read (4 calls of 0.2 s) finishes in the background
        calls = slow.calls
        return first, await fed.page(FederatedQuery.from_request(limit=5, sortby=NEWEST)), calls

    first, again, calls = asyncio.run(twice())
    assert first.missing == ["gamma"] and first.members["gamma"]["status_code"] == 504
    assert calls == 4 and slow.calls == 4, "the read was neither cancelled nor repeated"
    assert not again.partial and [i["id"] for i in again.items] == ["c-39", "c-38", "c-37", "c-36", "c-35"]


@pytest.mark.parametrize("budget", [6000, 0], ids=["stash", "re-read"])
def test_single_member_without_sortby_pages_lazily_in_its_own_order(budget: int) -> None:
    items = [item("c", n, (n * 7) % 30) for n in range(30)]
    c = ListMember("gamma", items, sorts=False, page=4)
    pages = every_page(federation(c, cap=20, budget=budget), limit=4)
    assert [i["id"] for page in pages for i in page] == [i["id"] for i in items]
    first = asyncio.run(federation(c, cap=20).page(FederatedQuery.from_request(limit=4)))
    assert first.matched == 30 and not first.partial


def test_bad_bbox_and_intersects_are_400s() -> None:
    for query, parameter in (({"bbox": [0, 10, 5, 5]}, "bbox"), ({"intersects": "{nope"}, "intersects"),
                             ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
                              "bbox"), ({"filter_expr": "cloud ===", "filter_lang": "cql2-text"}, "filter")):
        with pytest.raises(errors.InvalidParameter) as caught:
            FederatedQuery.from_request(**query)
        assert caught.value.parameter == parameter


@pytest.mark.parametrize("budget", [6000, 0], ids=["stash", "re-read"])
def test_without_sortby_lanes_take_turns_in_their_own_order(budget: int) -> None:
    a = [item("a", n, hours=n) for n in range(9)]
    b = [item("b", n, hours=100 - n) for n in range(4)]
    c = [item("c", n, hours=(n * 7) % 30) for n in range(30)]
    members = (ListMember("alpha", a, sorts=False, page=4), ListMember("beta", b, sorts=False, page=4),
               ListMember("gamma", c, sorts=False, page=4))
    fed = federation(*members, cap=5, budget=budget)  # the cap only bounds sorting: no sortby, nothing omitted
    first = asyncio.run(fed.page(FederatedQuery.from_request(limit=5)))
    assert [m.calls for m in members] == [1, 1, 1], "the first page reads one native page per lane"
    assert [i["id"] for i in first.items] == ["a-0", "b-0", "c-0", "a-1", "b-1"]
    assert not first.partial and first.matched == 43
    pages = every_page(fed, limit=5)
    got = [i["id"] for page in pages for i in page]
    assert sorted(got) == sorted(i["id"] for i in a + b + c) and len(got) == len(set(got))
    for lane in (a, b, c):  # each lane in its member's own order
        ids = [i["id"] for i in lane]
        assert [x for x in got if x in ids] == ids


def test_a_filter_on_a_property_a_member_lacks_reads_nothing() -> None:
    a = ListMember("alpha", [item("a", n, hours=n, cloud=1) for n in range(8)])
    with pytest.raises(errors.InvalidParameter) as caught:
        asyncio.run(federation(a).page(FederatedQuery.from_request(
            collections=["a"], limit=3, filter_expr="eo:cloud_cover < 10", filter_lang="cql2-text")))
    assert caught.value.parameter == "filter" and "eo:cloud_cover" in caught.value.message and a.calls == 0


def test_what_the_filter_implies_is_decided_before_reading() -> None:
    a = ListMember("alpha", [item("a", n, hours=n) for n in range(8)], sorts=False)
    b = ListMember("beta", [item("b", n, hours=n) for n in range(8)], sorts=False)
    fed = federation(a, b)
    page = asyncio.run(fed.page(FederatedQuery.from_request(
        limit=3, filter_expr="collection = 'a' OR collection IN ('c')", filter_lang="cql2-text")))
    assert {i["collection"] for i in page.items} == {"a"} and b.calls == 0, "beta cannot match: not read"
    since = (T0 + dt.timedelta(hours=5)).isoformat()
    page = asyncio.run(fed.page(FederatedQuery.from_request(
        limit=10, filter_expr=f"id = 'b-6' AND datetime > TIMESTAMP('{since}')", filter_lang="cql2-text")))
    assert [i["id"] for i in page.items] == ["b-6"]
    assert b.last.ids == ["b-6"] and b.last.start == T0 + dt.timedelta(hours=5), "ids and start go to members"
    calls = a.calls + b.calls
    empty = asyncio.run(fed.page(FederatedQuery.from_request(
        limit=10, ids=["a-1"], filter_expr="id = 'a-2'", filter_lang="cql2-text")))
    assert empty.items == [] and a.calls + b.calls == calls
