"""Sentinel Hub as its doc says it is (issue 14), not as our client and simulator once agreed it was.

- Catalog filters: the simulator holds them to the doc's grammar (`andExpression`, `cql2NotExpression`,
  comparison / `isBetween` on the collection's queryables); the member sends only the AND-ed parts that fit and
  the bridge evaluates the rest, with exact results and paging.
- "Use the appropriate end-point for each of the datasets": Catalog and Statistical API calls go to the
  collection's deployment (the documented default table, GEOFED_SENTINELHUB_COLLECTION_URLS).
- The Statistical API spends processing units: it is retried only where the upstream said it did not process
  the request (429 / 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from shapely.geometry import box

from geofed import errors, upstreams
from geofed.http.loop import run_sync
from geofed.settings import get_settings
from providers.sentinelhub import processes
from providers.sentinelhub.client import CREODIAS, MAIN_DEPLOYMENT, US_WEST, Endpoints, parse_collection_urls
from providers.sentinelhub.stac import members
from simulators import AUX_PATHS, DEMO_CREDENTIALS, geofed_env
from simulators.framework import SimulatorState
from simulators.sentinelhub import create_app
from simulators.sentinelhub.data import Catalog as SimulatedCatalog
from stac_bridge.member import SearchParams

TOKEN_PATH = AUX_PATHS["sentinelhub"]["token_url"]
CATALOG = "/api/v1/catalog/1.0.0"
JUNE = {"datetime": "2023-06-01T00:00:00Z/2023-07-31T23:59:59Z"}
STATISTICS = {"geometry": {"type": "Polygon", "coordinates": [[[13.6, 45.55], [13.85, 45.55], [13.85, 45.75],
                                                               [13.6, 45.75], [13.6, 45.55]]]},
              "collection": "sentinel-2-l2a", "start": "2023-06-01", "end": "2023-06-30", "interval": "P10D"}


def _reset(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GEOFED_DEMO", "0")
    monkeypatch.setenv("GEOFED_CACHE_TTL", "0")
    get_settings.cache_clear()
    run_sync(upstreams.aclose_all())


@pytest.fixture
def configured(sims: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _reset(monkeypatch, geofed_env({"sentinelhub": sims.url("sentinelhub")}))
    yield
    run_sync(upstreams.aclose_all())
    get_settings.cache_clear()


# ----------------------------------------------------------------- the Catalog's filter grammar
def _sim_search(app: Any, body: dict[str, Any]) -> httpx.Response:
    async def exercise() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            form = {"grant_type": "client_credentials", **DEMO_CREDENTIALS["sentinelhub"]}
            token = (await client.post(TOKEN_PATH, data=form)).json()["access_token"]
            return await client.post(f"{CATALOG}/search", json={"collections": ["sentinel-2-l2a"], "limit": 1,
                                                                 **JUNE, **body},
                                     headers={"Authorization": f"Bearer {token}"})

    return asyncio.run(exercise())


@pytest.mark.parametrize("text", [
    "eo:cloud_cover < 10 OR eo:cloud_cover > 90",
    "eo:cloud_cover IN (1, 2)",
    "platform LIKE 'sentinel%'",
    "S_INTERSECTS(geometry, POINT(13.7 45.6))",
    "datetime > TIMESTAMP('2023-06-10T00:00:00Z')",
    "id = 'S2A_MSIL2A_x'",
    "platform = 'sentinel-2a'",
    "eo:cloud_cover + 1 < 10",
])
def test_simulator_rejects_filters_outside_the_documented_grammar(text: str) -> None:
    answer = _sim_search(create_app(DEMO_CREDENTIALS["sentinelhub"]), {"filter": text, "filter-lang": "cql2-text"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "COMMON_BAD_PAYLOAD"


def test_simulator_accepts_the_documented_grammar() -> None:
    app = create_app(DEMO_CREDENTIALS["sentinelhub"])
    fitting = {"op": "and", "args": [
        {"op": "<", "args": [{"property": "eo:cloud_cover"}, 60]},
        {"op": "not", "args": [{"op": "between", "args": [{"property": "eo:cloud_cover"}, 5, 8]}]}]}
    answer = _sim_search(app, {"filter": fitting, "filter-lang": "cql2-json"})
    assert answer.status_code == 200, answer.text
    cloud = answer.json()["features"][0]["properties"]["eo:cloud_cover"]
    assert cloud < 60 and not 5 <= cloud <= 8
    lenient = create_app(DEMO_CREDENTIALS["sentinelhub"], cql2_strict=False)  # the old, configurable mode
    assert _sim_search(lenient, {"filter": "eo:cloud_cover < 1 OR eo:cloud_cover > 99"}).status_code == 200


def _walk(geofed: Any, body: dict[str, Any]) -> tuple[list[str], int]:
    ids, pages, url = [], 0, "/stac/search"
    while url:
        answer = geofed.post(url, json=body)
        assert answer.status_code == 200, answer.text
        ids.extend(f["id"] for f in answer.json()["features"])
        pages += 1
        nxt = [link for link in answer.json()["links"] if link["rel"] == "next"]
        if not nxt:
            break
        url = nxt[0]["href"].removeprefix(geofed.url)
        body = {**body, **nxt[0]["body"]} if nxt[0].get("merge") else nxt[0].get("body", body)
        assert pages < 60
    return ids, pages


def test_only_the_fitting_part_of_a_filter_goes_upstream_and_results_are_exact(geofed: Any, sims: Any) -> None:
    """Fails on the old member: it passed the whole filter through, and the Catalog answers 400."""
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/bodies").raise_for_status()
    area = (12.0, 44.5, 15.0, 46.5)
    text = ("eo:cloud_cover < 35 AND NOT eo:cloud_cover BETWEEN 10 AND 12 AND (platform = 'sentinel-2a' "
            "OR eo:cloud_cover < 3) AND datetime < TIMESTAMP('2023-07-20T00:00:00Z')")
    ids, pages = _walk(geofed, {"collections": ["sentinelhub:sentinel-2-l2a"], "bbox": list(area), **JUNE,
                                "filter": text, "filter-lang": "cql2-text", "limit": 9})
    start, end = dt.datetime(2023, 6, 1, tzinfo=dt.UTC), dt.datetime(2023, 7, 20, tzinfo=dt.UTC)
    truth = {r.item["id"] for r in SimulatedCatalog(SimulatorState("sentinelhub", seed=42))
             .records["sentinel-2-l2a"]
             if r.geometry.intersects(box(*area)) and start <= r.when < end and r.cloud is not None
             and r.cloud < 35 and not 10 <= r.cloud <= 12 and (r.item["properties"]["platform"] == "sentinel-2a"
                                                                 or r.cloud < 3)}
    assert len(truth) > 18 and pages >= 3
    assert len(ids) == len(set(ids)) and set(ids) == truth  # every match once, across pages
    sent = [b["body"] for b in sims.get("sentinelhub", "/_sim/bodies").json() if b["path"].endswith("/search")]
    assert sent and all(b["filter-lang"] == "cql2-json" for b in sent)
    assert all(b["filter"] == {"op": "and", "args": [
        {"op": "<", "args": [{"property": "eo:cloud_cover"}, 35]},
        {"op": "not", "args": [{"op": "between", "args": [{"property": "eo:cloud_cover"}, 10, 12]}]}]}
               for b in sent)
    assert all(b["datetime"].endswith("2023-07-20T00:00:00Z") for b in sent)  # narrowed by the bridge


def test_a_filter_with_nothing_that_fits_sends_no_filter(configured: None, sims: Any) -> None:
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/bodies").raise_for_status()
    params = SearchParams(collections=["sentinelhub:sentinel-1-grd", "sentinelhub:sentinel-2-l1c"], limit=5,
                          start=dt.datetime(2023, 6, 1, tzinfo=dt.UTC), end=dt.datetime(2023, 6, 3, tzinfo=dt.UTC),
                          filter_raw="eo:cloud_cover < 50 OR platform = 'sentinel-2b'", filter_lang="cql2-text")
    (member,) = members()
    page = run_sync(member.search(params, None))
    assert page.items  # the member returns candidates; the bridge keeps the matches
    sent = [b["body"] for b in sims.get("sentinelhub", "/_sim/bodies").json() if b["path"].endswith("/search")]
    assert sent and all("filter" not in b for b in sent)


# ----------------------------------------------------------------- one end-point per collection
def test_the_default_table_routes_collections_to_their_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOFED_SENTINELHUB_COLLECTION_URLS", raising=False)
    get_settings.cache_clear()
    main = Endpoints.configured(MAIN_DEPLOYMENT)
    assert main.url("sentinel-2-l2a") == MAIN_DEPLOYMENT
    assert main.url("landsat-ot-l2") == US_WEST and main.url("sentinel-3-olci") == CREODIAS
    assert main.deployments() == [MAIN_DEPLOYMENT, US_WEST, CREODIAS]
    elsewhere = Endpoints.configured("https://sh.dataspace.copernicus.eu")  # one host serves everything
    assert elsewhere.url("landsat-ot-l2") == "https://sh.dataspace.copernicus.eu"
    monkeypatch.setenv("GEOFED_SENTINELHUB_COLLECTION_URLS", '{"landsat-ot-l2": "https://ls.example/"}')
    get_settings.cache_clear()
    assert Endpoints.configured(MAIN_DEPLOYMENT).url("landsat-ot-l2") == "https://ls.example"
    assert parse_collection_urls("a=https://x.example, b=http://y.example/") == {
        "a": "https://x.example", "b": "http://y.example"}
    with pytest.raises(ValueError, match="COLLECTION_URLS"):
        parse_collection_urls("a=ftp://x")
    get_settings.cache_clear()


@pytest.fixture
def two_deployments(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process simulator with Sentinel-2 on deployment `eu` and Sentinel-1 on `sar` only (nothing at the
    root); geofed's base URL is `eu`, and the setting routes sentinel-1-grd to `sar`."""
    app = create_app(DEMO_CREDENTIALS["sentinelhub"], root_collections=[],
                     deployments={"eu": ["sentinel-2-l2a", "sentinel-2-l1c"], "sar": ["sentinel-1-grd"]})
    upstreams.set_transport("sentinelhub", httpx.ASGITransport(app=app))
    creds = DEMO_CREDENTIALS["sentinelhub"]
    _reset(monkeypatch, {"GEOFED_SENTINELHUB_URL": "http://sim.test/eu",
                         "GEOFED_SENTINELHUB_TOKEN_URL": f"http://sim.test{TOKEN_PATH}",
                         "GEOFED_SENTINELHUB_CLIENT_ID": creds["client_id"],
                         "GEOFED_SENTINELHUB_CLIENT_SECRET": creds["client_secret"],
                         "GEOFED_SENTINELHUB_COLLECTION_URLS": "sentinel-1-grd=http://sim.test/sar"})
    yield app
    upstreams.set_transport("sentinelhub", None)
    run_sync(upstreams.aclose_all())
    get_settings.cache_clear()


def test_catalog_and_statistics_calls_go_to_the_collections_deployment(two_deployments: Any) -> None:
    """Fails on the old client: everything went to the base URL, where Sentinel-1 does not exist (404)."""
    state = two_deployments.state.sim
    (member,) = members()
    listed = sorted(c["id"] for c in run_sync(member.collections()))
    assert listed == ["sentinelhub:sentinel-1-grd", "sentinelhub:sentinel-2-l1c", "sentinelhub:sentinel-2-l2a"]
    june = {"start": dt.datetime(2023, 6, 1, tzinfo=dt.UTC), "end": dt.datetime(2023, 6, 10, tzinfo=dt.UTC)}
    for collection in ("sentinelhub:sentinel-1-grd", "sentinelhub:sentinel-2-l2a"):
        page = run_sync(member.search(SearchParams(collections=[collection], limit=3, **june), None))
        assert len(page.items) == 3 and {i["collection"] for i in page.items} == {collection}
        item = run_sync(member.get_item(collection, page.items[0]["id"]))
        assert item["id"] == page.items[0]["id"]
    sar = run_sync(processes.compute({**STATISTICS, "collection": "sentinel-1-grd",
                                      "evalscript": "//VERSION=3\nfunction setup() { return {input: ['VV', "
                                                    "'dataMask'], output: [{id: 'vv', bands: 1}]}; }\n"
                                                    "function evaluatePixel(s) { return {vv: [s.VV]}; }"}))
    assert sar["series"]
    paths = [(e["path"], e["status"]) for e in state.log if "/api/v1/" in e["path"]]
    assert all(status == 200 for _, status in paths), paths
    assert ("/sar/api/v1/statistics", 200) in paths and ("/sar/api/v1/catalog/1.0.0/search", 200) in paths
    assert ("/eu/api/v1/catalog/1.0.0/search", 200) in paths
    assert not [p for p, _ in paths if p.startswith("/eu/") and "sentinel-1" in p]


# ----------------------------------------------------------------- statistics spend processing units
def _statistics_calls(sims: Any) -> list[int]:
    return [e["status"] for e in sims.log("sentinelhub", "/api/v1/statistics")]


def test_statistics_are_not_retried_after_an_answer_that_may_have_been_processed(
        configured: None, sims: Any) -> None:
    """Fails on the old client (idempotent=True): a bare 503 was sent again, spending units twice."""
    for fault in ({"status": 503}, {"status": 502}, {"status": 500}):
        sims.clear("sentinelhub")
        sims.faults("sentinelhub", count=1, path="/api/v1/statistics", **fault)
        with pytest.raises(errors.UpstreamError):
            run_sync(processes.compute(STATISTICS))
        assert _statistics_calls(sims) == [fault["status"]], fault


@pytest.mark.parametrize("status", [429, 503])
def test_statistics_are_retried_where_the_upstream_said_not_processed(
        configured: None, sims: Any, status: int) -> None:
    sims.faults("sentinelhub", status=status, count=1, retry_after=200, retry_after_unit="ms",
                path="/api/v1/statistics")
    assert run_sync(processes.compute(STATISTICS))["series"]
    assert _statistics_calls(sims) == [status, 200]
