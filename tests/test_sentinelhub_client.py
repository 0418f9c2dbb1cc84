"""Sentinel Hub Catalog client and federation member, in process, against the running simulator.

The client is configured like production (GEOFED_SENTINELHUB_* pointing at the simulator, demo mode off) and
called through `geofed.http.loop.run_sync`. The truth comes from the simulator's own data
(`simulators.sentinelhub.data`, filtered here with plain comparisons) and its request log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pystac
import pytest
import shapely
from pystac.validation import validate_dict
from shapely.geometry import box

from geofed import errors, upstreams
from geofed.http.loop import run_sync
from geofed.query import ItemContext, instant
from geofed.settings import get_settings
from providers.sentinelhub import records
from providers.sentinelhub.client import Catalog, SearchRequest
from providers.sentinelhub.stac import CatalogMember, members
from simulators import AUX_PATHS, DEMO_CREDENTIALS, geofed_env
from simulators.framework import SimulatorState
from simulators.sentinelhub import create_app
from simulators.sentinelhub.data import COLLECTIONS as SIMULATED_COLLECTIONS
from simulators.sentinelhub.data import Catalog as SimulatedCatalog
from stac_bridge.member import SearchParams
from tests.conftest import offline_stac_validator

UTC = dt.UTC
YEAR_2023 = (dt.datetime(2023, 1, 1, tzinfo=UTC), dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC))
AREA = (11.0, 44.0, 16.6, 47.1)  # the simulator's whole tile grid
TOKEN_PATH = AUX_PATHS["sentinelhub"]["token_url"]


@pytest.fixture(scope="module")
def truth() -> SimulatedCatalog:
    """The simulator's items, generated from the same seed as the running simulator (42)."""
    return SimulatedCatalog(SimulatorState("sentinelhub", seed=42))


@pytest.fixture
def configured(sims: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GEOFED_* settings for Sentinel Hub at the simulator, and fresh upstream clients (a fresh token)."""
    for key, value in geofed_env({"sentinelhub": sims.url("sentinelhub")}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GEOFED_DEMO", "0")
    monkeypatch.setenv("GEOFED_CACHE_TTL", "0")  # these tests count upstream calls
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/bodies").raise_for_status()
    get_settings.cache_clear()
    run_sync(upstreams.aclose_all())
    yield
    run_sync(upstreams.aclose_all())
    get_settings.cache_clear()


def _member() -> CatalogMember:
    found = members()
    assert len(found) == 1 and isinstance(found[0], CatalogMember)
    return found[0]


def _search_all(member: CatalogMember, params: SearchParams) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    state, calls = None, 0
    while True:
        page = member.search(params, state)
        result = run_sync(page)
        calls += 1
        items.extend(result.items)
        if result.next is None:
            return items, calls
        assert result.items, "an empty page must not carry a next state"
        state = result.next
        assert calls < 50


def _bodies(sims: Any) -> list[dict[str, Any]]:
    return sims.get("sentinelhub", "/_sim/bodies").json()


def test_cloud_cover_search_over_several_pages_equals_simulator_truth(
    configured: None, sims: Any, truth: SimulatedCatalog
) -> None:
    area = box(*AREA)
    expected = [r.item["id"] for r in truth.records["sentinel-2-l2a"]
                if YEAR_2023[0] <= r.when <= YEAR_2023[1] and r.cloud is not None and r.cloud < 20
                and area.intersects(r.geometry)]
    assert len(expected) >= 250  # 3+ upstream pages of 100

    params = SearchParams(collections=["sentinelhub:sentinel-2-l2a"], limit=100, bbox=AREA,
                          start=YEAR_2023[0], end=YEAR_2023[1], filter_raw="eo:cloud_cover < 20",
                          filter_lang="cql2-text")
    items, calls = _search_all(_member(), params)
    assert [i["id"] for i in items] == expected  # the upstream's own order, every match once
    assert all(i["collection"] == "sentinelhub:sentinel-2-l2a" for i in items)
    assert all(i["properties"]["eo:cloud_cover"] < 20 for i in items)
    searches = sims.log("sentinelhub", "/catalog/1.0.0/search", method="POST")
    assert len(searches) == calls >= 3
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 1

    # The same search in CQL2 JSON (sent upstream as a JSON object), every match once.
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/bodies").raise_for_status()
    as_json = SearchParams(collections=["sentinelhub:sentinel-2-l2a"], limit=1000, bbox=AREA, start=YEAR_2023[0],
                           end=YEAR_2023[1], filter_raw={"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]},
                           filter_lang="cql2-json")
    found, _ = _search_all(_member(), as_json)
    assert [i["id"] for i in found] == expected
    sent = [b["body"] for b in _bodies(sims) if b["path"].endswith("/search")]
    assert {b["limit"] for b in sent} == {100}
    assert all(b["filter"] == as_json.filter_raw and b["filter-lang"] == "cql2-json" for b in sent)


def test_token_reused_across_50_calls(configured: None, sims: Any, truth: SimulatedCatalog) -> None:
    wanted = truth.records["sentinel-2-l1c"][:50]
    member = _member()
    for record in wanted:
        item = run_sync(member.get_item("sentinelhub:sentinel-2-l1c", record.item["id"]))
        assert item["id"] == record.item["id"]
        assert instant(item["properties"]["datetime"]) == record.when
    assert len(sims.log("sentinelhub", "/catalog/1.0.0/collections/sentinel-2-l1c/items/")) == 50
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 1


def test_expired_token_is_refreshed_once(configured: None, sims: Any) -> None:
    catalog = Catalog()
    assert len(run_sync(catalog.collections())) == 3
    assert sims.expire_tokens("sentinelhub") >= 1
    assert len(run_sync(catalog.collections())) == 3
    assert [e["status"] for e in sims.log("sentinelhub", "/catalog/1.0.0/collections")] == [200, 401, 200]
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 2


def test_rate_limited_search_retries_after_milliseconds(configured: None, sims: Any) -> None:
    # Retry-After: 400 means 400 ms at Sentinel Hub; read as seconds it would exceed the retry budget and fail.
    sims.faults("sentinelhub", status=429, count=2, retry_after=400, retry_after_unit="ms", path="/search")
    params = SearchParams(collections=["sentinelhub:sentinel-2-l2a"], limit=5, start=YEAR_2023[0], end=YEAR_2023[1])
    page = run_sync(_member().search(params, None))
    assert len(page.items) == 5
    assert [e["status"] for e in sims.log("sentinelhub", "/search")] == [429, 429, 200]


def test_rate_limited_token_endpoint_is_retried(configured: None, sims: Any) -> None:
    sims.faults("sentinelhub", status=429, count=1, retry_after=250, retry_after_unit="ms", path=TOKEN_PATH)
    assert len(run_sync(Catalog().collections())) == 3
    assert [e["status"] for e in sims.log("sentinelhub", TOKEN_PATH)] == [429, 200]


def test_simulator_token_endpoint_rate_limit_answers_retry_after_in_ms() -> None:
    app = create_app(DEMO_CREDENTIALS["sentinelhub"], token_burst=2, token_refill_per_s=1.0)
    form = {"grant_type": "client_credentials", **DEMO_CREDENTIALS["sentinelhub"]}

    async def exercise() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            answers = [await client.post(TOKEN_PATH, data=form) for _ in range(3)]
            return answers, await client.post(TOKEN_PATH, data={**form, "client_secret": "wrong"})

    answers, refused = asyncio.run(exercise())
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert 0 < int(answers[2].headers["Retry-After"]) <= 1000  # milliseconds
    assert refused.status_code == 401


def test_datetime_always_sent_and_limit_clamped(configured: None, sims: Any) -> None:
    params = SearchParams(collections=["sentinelhub:sentinel-2-l2a"], limit=500)  # no datetime, too large
    page = run_sync(_member().search(params, None))
    assert len(page.items) == 100 and page.next == {"c": 0, "n": 100}
    body = _bodies(sims)[-1]["body"]
    start, end = SIMULATED_COLLECTIONS["sentinel-2-l2a"]["extent"]["temporal"]["interval"][0]
    assert end is None
    assert body["limit"] == 100
    assert body["datetime"] == f"{start}/.."  # the collection's temporal extent, open end
    assert body["collections"] == ["sentinel-2-l2a"]


def test_member_walks_collections_one_upstream_search_each(configured: None, sims: Any) -> None:
    day = (dt.datetime(2023, 6, 1, tzinfo=UTC), dt.datetime(2023, 6, 12, tzinfo=UTC))
    params = SearchParams(collections=["sentinelhub:sentinel-1-grd", "sentinelhub:sentinel-2-l1c"], limit=100,
                          start=day[0], end=day[1])
    items, _ = _search_all(_member(), params)
    assert {i["collection"] for i in items} == {"sentinelhub:sentinel-1-grd", "sentinelhub:sentinel-2-l1c"}
    sent = [b["body"]["collections"] for b in _bodies(sims) if b["path"].endswith("/search")]
    assert sent == [["sentinel-1-grd"], ["sentinel-2-l1c"]]


def test_filter_rejected_upstream_is_400_with_its_message(configured: None) -> None:
    # The member never sends a filter the Catalog's grammar rejects (test_sentinelhub_contract.py); a client
    # that does gets the upstream's 400 with its message.
    request = SearchRequest(collection="sentinel-2-l2a", filter="platform = 'sentinel-2a'", filter_lang="cql2-text",
                            start=YEAR_2023[0], end=YEAR_2023[1])
    with pytest.raises(errors.UpstreamRejected) as caught:
        run_sync(Catalog().search(request))
    assert caught.value.status == 400
    assert "platform is not a queryable" in caught.value.message
    assert "Sentinel Hub" in caught.value.message


def test_unknown_collection_and_item_are_404(configured: None) -> None:
    member = _member()
    with pytest.raises(errors.NotFound) as caught:
        run_sync(member.search(SearchParams(collections=["sentinelhub:landsat-9"]), None))
    assert caught.value.status == 404 and "landsat-9" in caught.value.message
    with pytest.raises(errors.NotFound):
        run_sync(member.get_item("sentinelhub:sentinel-2-l2a", "S2A_MSIL2A_NOPE"))


def test_items_and_collections_are_valid_stac_1_1(configured: None, truth: SimulatedCatalog) -> None:
    member = _member()
    record = truth.records["sentinel-2-l2a"][7]
    item = run_sync(member.get_item("sentinelhub:sentinel-2-l2a", record.item["id"]))
    assert item["stac_version"] == "1.1.0"
    assert "crs" not in item["geometry"] and "crs" not in item["properties"]["proj:geometry"]
    assert shapely.geometry.shape(item["geometry"]).equals(record.geometry)
    assert item["properties"]["eo:cloud_cover"] == record.cloud
    assert [link["rel"] for link in item["links"]] == ["derived_from"]
    validator = offline_stac_validator()
    # The bridge adds geofed's links; STAC requires a `collection` link when `collection` is set.
    linked = {**item, "links": [*item["links"], {"rel": "collection", "href": "http://geofed.test/stac/c"}]}
    validate_dict(linked, validator=validator)
    for collection in run_sync(member.collections()):
        assert collection["id"].startswith("sentinelhub:") and collection["links"] == []
        validator.validate_core(collection, pystac.STACObjectType.COLLECTION, "1.1.0")
    queryables = run_sync(member.queryables("sentinelhub:sentinel-2-l2a"))
    assert {"eo:cloud_cover", "datetime"} <= set(queryables)


def test_an_upstream_preview_asset_gets_a_preview_role(truth: SimulatedCatalog) -> None:
    # The documented Catalog has no preview asset (its one asset is an s3:// directory): a record that does
    # offer one (as the Process API could) is listed with the STAC role clients look for.
    record = truth.records["sentinel-2-l2a"][0].item
    ctx = ItemContext("sentinelhub:sentinel-2-l2a", "http://geofed.test")
    plain = records.to_item(record, ctx)
    assert plain["assets"]["data"]["roles"] == ["data"] and plain["collection"] == ctx.collection_id
    previews = {**record, "assets": {**record["assets"],
                                     "thumbnail": {"href": "https://example.test/t.png", "type": "image/png"},
                                     "visual": {"href": "https://example.test/v.tif", "roles": ["visual"]}}}
    item = records.to_item(previews, ctx)
    assert item["assets"]["thumbnail"]["roles"] == ["thumbnail"]
    assert item["assets"]["visual"]["roles"] == ["visual", "overview"]


def test_wrong_credentials_are_502_without_the_secret(configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "not-the-right-secret-5f2c"
    monkeypatch.setenv("GEOFED_SENTINELHUB_CLIENT_SECRET", secret)
    get_settings.cache_clear()
    run_sync(upstreams.aclose_all())
    with pytest.raises(errors.UpstreamAuthError) as caught:
        run_sync(Catalog().collections())
    assert caught.value.status == 502
    assert "Sentinel Hub" in caught.value.message and secret not in caught.value.message


