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


def item(collection: str, n: int, hours: int, cloud: float = 0.0) -> dict[str, Any]:
    when = (T0 + dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    return {"type": "Feature", "stac_version": "1.1.0", "id": f"{collection}-{n}", "collection": collection,
            "geometry": {"type": "Point", "coordinates": [n % 50, n % 40]}, "bbox": [n % 50, n % 40] * 2,
            "properties": {"datetime": when, "cloud": cloud}, "links": [], "assets": {}}


class ListMember:
    """Pages through fixed items by offset; `sorts` says whether it returns them in the default order."""

    def __init__(self, name: str, items: list[dict[str, Any]], sorts: bool = True, page: int = 4,
                 failure: errors.GeofedError | None = None) -> None:
        self.name = name
        self.items = items
        self.sorts = sorts
        self.max_page_size = page
        self.failure = failure
        self.calls = 0

    async def collections(self) -> list[dict[str, Any]]:
        return [{"id": c} for c in sorted({i["collection"] for i in self.items})]

    def owns(self, collection_id: str) -> bool:
        return any(i["collection"] == collection_id for i in self.items)

    def sorts_natively(self, sortby: SortBy) -> bool:
        return self.sorts and not sortby

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        offset = int(state or 0)
        chosen = [i for i in self.items if i["collection"] in params.collections]
        if self.sorts:
            chosen.sort(key=lambda i: (i["properties"]["datetime"], ), reverse=True)
        page = chosen[offset:offset + params.limit]
        more = offset + params.limit < len(chosen)
        return MemberPage(page, offset + params.limit if more else None, len(chosen))

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        raise errors.NotFound("no")

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return {}


def federation(*members: ListMember, budget: int = 6000, cap: int = 10_000) -> Federation:
    registry = Registry(list(members), timeout=5, cache_ttl=0)
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
    pages = every_page(federation(a, b, c, budget=budget), limit=5)
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
    pages = every_page(federation(dup), limit=3, filter_expr="cloud = 1", filter_lang="cql2-text")
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


def test_over_the_sort_cap_is_a_400_naming_the_member() -> None:
    c = ListMember("gamma", [item("c", n, n) for n in range(30)], sorts=False)
    with pytest.raises(errors.InvalidParameter) as caught:
        asyncio.run(federation(c, cap=20).page(FederatedQuery.from_request(limit=5)))
    assert "gamma" in caught.value.message and "narrow" in caught.value.message


def test_bad_bbox_and_intersects_are_400s() -> None:
    for query, parameter in (({"bbox": [0, 10, 5, 5]}, "bbox"), ({"intersects": "{nope"}, "intersects"),
                             ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
                              "bbox"), ({"filter_expr": "cloud ===", "filter_lang": "cql2-text"}, "filter")):
        with pytest.raises(errors.InvalidParameter) as caught:
            FederatedQuery.from_request(**query)
        assert caught.value.parameter == parameter
