"""The federated STAC API end to end: pystac-client / httpx → geofed (real server) → the simulators.

The truth is read from the simulators directly: Sentinel Hub's Catalog (searched with its own token), the
SpaceKnow scene archive (`/_sim/archive`, filtered here with shapely) and, once CarbonMapper's member is
there, CarbonMapper's STAC search. Faults are injected through the simulators, on a server of its own
(no retries, no cache, a breaker that never opens) so other tests never see them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely.geometry
from pystac_client import Client

from providers.spaceknow.sources import SceneSource

ROOT = Path(__file__).resolve().parent.parent
WINDOW = ("2024-06-01T00:00:00Z", "2024-06-20T00:00:00Z")
SH_COLLECTIONS = ["sentinelhub:sentinel-2-l2a", "sentinelhub:sentinel-1-grd"]
SEARCH = "/stac/search"


def _when(text: str) -> dt.datetime:
    text = text.replace(" ", "T")
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


START, END = _when(WINDOW[0]), _when(WINDOW[1])


# ------------------------------------------------------------------ truth, from the simulators
def sentinelhub_truth(sims: Any, collection: str, window: tuple[str, str] = WINDOW) -> dict[str, str]:
    """id → datetime of every item of one Sentinel Hub collection in `window`, read from the simulator."""
    token = sims.post("sentinelhub", "/auth/realms/main/protocol/openid-connect/token", data={
        "grant_type": "client_credentials", "client_id": "geofed-demo", "client_secret": "demo-secret"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    found: dict[str, str] = {}
    body: dict[str, Any] = {"collections": [collection.split(":", 1)[1]], "limit": 100, "datetime": "/".join(window)}
    while True:
        page = sims.post("sentinelhub", "/api/v1/catalog/1.0.0/search", json=body, headers=headers).json()
        found.update({f["id"]: f["properties"]["datetime"] for f in page["features"]})
        if page.get("context", {}).get("next") is None:
            return found
        body["next"] = page["context"]["next"]


def spaceknow_truth(sims: Any) -> dict[str, str]:
    """Scenes of the configured datasets over the configured default areas, in WINDOW."""
    options = SceneSource.collection.options  # what the collection is configured to search by default
    datasets = {(d["provider"], d["dataset"]) for d in options["datasets"]}
    areas = [shapely.geometry.box(*a["bbox"]) for a in options["default_areas"]]
    found = {}
    for scene in sims.get("spaceknow", "/_sim/archive").json():
        footprint = shapely.geometry.shape(scene["footprint"])
        if ((scene["provider"], scene["dataset"]) in datasets and START <= _when(scene["datetime"]) <= END
                and any(footprint.intersects(a) for a in areas)):
            found[scene["sceneId"]] = _when(scene["datetime"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    return found


@pytest.fixture(scope="module")
def truth(sims: Any) -> dict[tuple[str, str], str]:
    """(collection, id) → datetime over the three members the federation tests use."""
    out = {(c, i): d for c in SH_COLLECTIONS for i, d in sentinelhub_truth(sims, c).items()}
    out.update({("spaceknow-scenes", i): d for i, d in spaceknow_truth(sims).items()})
    return out


pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")


def default_order(keys: list[tuple[str, str]], truth: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    ordered = sorted(keys)  # collection, then id ascending ...
    return sorted(ordered, key=lambda k: _when(truth[k]), reverse=True)  # ... under datetime descending


FAULT_ENV = {"GEOFED_HTTP_RETRIES": "1", "GEOFED_CACHE_TTL": "0", "GEOFED_BREAKER_FAILURES": "100000"}


@pytest.fixture
def faulty(start_geofed: Any) -> Any:
    """A server for fault injection: one attempt per call, no cache, a breaker that stays closed."""
    return start_geofed(**FAULT_ENV)


# ------------------------------------------------------------------ pystac-client
def test_search_across_three_members_in_order_exactly_once(geofed: Any, truth: dict[tuple[str, str], str]) -> None:
    client = Client.open(f"{geofed.url}/stac/", timeout=120)
    collections = [*SH_COLLECTIONS, "spaceknow-scenes"]
    search = client.search(collections=collections, datetime="/".join(WINDOW), limit=9, max_items=500,
                           sortby="-datetime")
    items = list(search.items_as_dicts())
    got = [(i["collection"], i["id"]) for i in items]
    assert len(truth) > 3 * 9, "the window must span several pages"
    assert {c for c, _ in truth} == set(collections)
    assert len(got) == len(set(got)), "an item came twice"
    assert set(got) == set(truth)
    assert got == default_order(got, truth)
    assert search.matched() == len(truth)


def test_post_paging_carries_a_signed_token_and_no_empty_page(geofed: Any, truth: dict[tuple[str, str], str]) -> None:
    body: dict[str, Any] = {"collections": [*SH_COLLECTIONS, "spaceknow-scenes"], "datetime": "/".join(WINDOW),
                            "limit": 25}
    pages = []
    while True:
        response = geofed.post(SEARCH, json=body)
        assert response.status_code == 200, response.text
        page = response.json()
        nxt = [ln for ln in page["links"] if ln["rel"] == "next"]
        pages.append(len(page["features"]))
        assert page["features"] or not nxt
        if not nxt:
            break
        assert nxt[0]["method"] == "POST" and nxt[0]["merge"] is True and "token" in nxt[0]["body"]
        body = {**body, **nxt[0]["body"]}
    assert sum(pages) == len(truth)
    assert all(n == 25 for n in pages[:-1]) and 0 < pages[-1] <= 25


def test_collection_listing_and_single_item(geofed: Any, sims: Any, truth: dict[tuple[str, str], str]) -> None:
    client = Client.open(f"{geofed.url}/stac/", timeout=120)
    ids = {c.id for c in client.get_collections()}
    token = sims.post("sentinelhub", "/auth/realms/main/protocol/openid-connect/token", data={
        "grant_type": "client_credentials", "client_id": "geofed-demo", "client_secret": "demo-secret"}).json()
    upstream = sims.get("sentinelhub", "/api/v1/catalog/1.0.0/collections",
                        headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert {f"sentinelhub:{c['id']}" for c in upstream["collections"]} <= ids
    assert "spaceknow-scenes" in ids
    collection = client.get_collection("sentinelhub:sentinel-2-l2a")
    assert any(ln.rel == "via" for ln in collection.links)
    assert any("host" in (p.roles or []) for p in collection.providers or [])
    cid, iid = next(k for k in sorted(truth) if k[0] == "sentinelhub:sentinel-2-l2a")
    item = collection.get_item(iid)
    assert item is not None and item.id == iid and item.collection_id == cid
    assert item.datetime == _when(truth[(cid, iid)])
    assert item.get_self_href() == f"{geofed.url}/stac/collections/sentinelhub:sentinel-2-l2a/items/{iid}"


# ------------------------------------------------------------------ errors
def test_bad_input_is_a_400_naming_the_parameter(geofed: Any) -> None:
    for params, parameter in (({"bbox": "0,10,5,5"}, "bbox"), ({"datetime": "yesterday"}, "datetime"),
                              ({"filter": "eo:cloud_cover ==="}, "filter"), ({"token": "forged.token"}, "token")):
        response = geofed.get(SEARCH, params=params)
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        assert body["code"] and parameter in body["description"], body
    assert geofed.get("/stac/collections/nope/items").status_code == 404
    assert geofed.get(SEARCH, params={"collections": "nope"}).status_code == 404


def test_tampered_and_foreign_tokens_are_400(geofed: Any) -> None:
    params = {"collections": ",".join(SH_COLLECTIONS), "datetime": "/".join(WINDOW), "limit": 5}
    first = geofed.get(SEARCH, params=params).json()
    href = next(ln["href"] for ln in first["links"] if ln["rel"] == "next")
    token = httpx.URL(href).params["token"]
    assert geofed.get(SEARCH, params={**params, "token": token}).status_code == 200
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad, query in ((tampered, params), (token, {**params, "limit": 5, "datetime": "2024-06-02T00:00:00Z/.."})):
        response = geofed.get(SEARCH, params={**query, "token": bad})
        assert response.status_code == 400 and response.json()["parameter"] == "token", response.text


def test_one_member_down_is_a_partial_answer(faulty: Any, sims: Any, truth: dict[tuple[str, str], str]) -> None:
    sims.faults("sentinelhub", status=503, path="/api/v1/catalog")
    body = {"collections": [*SH_COLLECTIONS, "spaceknow-scenes"], "datetime": "/".join(WINDOW), "limit": 100}
    response = faulty.post(SEARCH, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["X-Geofed-Partial"] == "true" and "no-store" in response.headers["Cache-Control"]
    page = response.json()
    assert page["federation:missing"] == ["sentinelhub"]
    assert page["federation:members"]["sentinelhub"]["status"] == "failed"
    assert "Sentinel Hub" in page["federation:members"]["sentinelhub"]["error"]
    assert page["federation:members"]["spaceknow"]["status"] == "ok"
    expected = {k for k in truth if k[0] == "spaceknow-scenes"}
    assert {(f["collection"], f["id"]) for f in page["features"]} == expected
    strict = faulty.post(SEARCH, json={**body, "strict": True})
    assert strict.status_code == 502 and "sentinelhub" in strict.json()["description"]


def test_every_member_down_is_a_502(faulty: Any, sims: Any) -> None:
    sims.faults("sentinelhub", status=503, path="/api/v1/catalog")
    sims.faults("spaceknow", status=500)
    response = faulty.get(SEARCH, params={"collections": ",".join([*SH_COLLECTIONS, "spaceknow-scenes"]),
                                          "datetime": "/".join(WINDOW)})
    assert response.status_code == 502, response.text
    body = response.json()
    assert "sentinelhub" in body["description"] and "spaceknow" in body["description"]
    assert "Traceback" not in response.text and "demo-secret" not in response.text


def test_links_follow_a_prefixed_public_url(start_geofed: Any) -> None:
    server = start_geofed(GEOFED_PUBLIC_URL="https://example.org/geofed")
    prefix = "https://example.org/geofed/stac/"
    landing = server.get("/stac/").json()
    assert {ln["rel"] for ln in landing["links"]} >= {"self", "root", "data", "conformance", "search"}
    assert all(ln["href"].startswith(prefix) for ln in landing["links"])
    collection = server.get("/stac/collections/sentinelhub:sentinel-2-l2a").json()
    own = [ln for ln in collection["links"] if ln["rel"] not in ("via",)]
    assert all(ln["href"].startswith(prefix) for ln in own)
    page = server.get(SEARCH, params={"collections": SH_COLLECTIONS[0], "datetime": "/".join(WINDOW),
                                      "limit": 2}).json()
    own_rels = {"self", "root", "parent", "collection", "next"}
    hrefs = [ln["href"] for f in page["features"] for ln in f["links"] if ln["rel"] in own_rels]
    hrefs += [ln["href"] for ln in page["links"]]
    assert hrefs and all(h.startswith(prefix) for h in hrefs), hrefs


# ------------------------------------------------------------------ unrestricted and lazily merged searches
SORT_CAP = 3000  # a server whose cap sits below Epoch's plot count and CarbonMapper STAC's collections


def test_unrestricted_search_without_sortby_is_one_native_page_per_collection(start_geofed: Any, sims: Any) -> None:
    """pystac-client's plainest cross-collection search (issue 13): every collection with items, no sortby."""
    server = start_geofed(GEOFED_CACHE_TTL="0")
    client = Client.open(f"{server.url}/stac/", timeout=120)
    collections = [c.id for c in client.get_collections() if not c.id.startswith("appeears:")]
    assert len(collections) >= 10
    sims.clear()
    first = server.post(SEARCH, json={"collections": collections, "limit": 25}, timeout=300)
    assert first.status_code == 200, first.text
    assert len(first.json()["features"]) == 25 and "X-Geofed-Partial" not in first.headers
    # what the first page cost upstream: about one page per collection lane (pipelines and tokens aside)
    reads = {name: [e for e in sims.log(name) if e["method"] in ("GET", "POST") and "token" not in e["path"]
                    and "auth" not in e["path"]] for name in sims.urls}
    assert sum(len(r) for r in reads.values()) <= 3 * len(collections), {n: len(r) for n, r in reads.items()}
    items = list(client.search(collections=collections, limit=25, max_items=100).items_as_dicts())
    keys = [(i["collection"], i["id"]) for i in items]
    assert len(keys) == 100 and len(set(keys)) == 100
    assert len({c for c, _ in keys}) > 3, "lanes take turns: the first pages show several collections"


def test_sortby_over_a_member_that_cannot_sort_is_left_out_or_refused(start_geofed: Any, sims: Any) -> None:
    server = start_geofed(GEOFED_FEDERATION_SORT_CAP=str(SORT_CAP))
    assert sims.info("epoch")["plots"] > SORT_CAP
    response = server.get(SEARCH, params={"limit": 7, "sortby": "-datetime"}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["X-Geofed-Partial"] == "true"
    page = response.json()
    assert "epoch" in page["federation:missing"] and "appeears" not in page["federation:members"]
    epoch = page["federation:members"]["epoch"]
    assert epoch["status"] == "omitted" and str(SORT_CAP) in epoch["error"]
    assert "collections=epoch-plots" in epoch["error"], "the status says how to include it"
    assert len(page["features"]) == 7
    keys = [(-_when(f["properties"]["datetime"]).timestamp(), f["collection"], f["id"]) for f in page["features"]]
    assert keys == sorted(keys)
    nxt = next(ln["href"] for ln in page["links"] if ln["rel"] == "next")
    second = httpx.get(nxt, timeout=300)
    assert second.status_code == 200 and "epoch" in second.json()["federation:missing"]
    later = [(-_when(f["properties"]["datetime"]).timestamp(), f["collection"], f["id"])
             for f in second.json()["features"]]
    assert later and keys[-1] < later[0] and later == sorted(later)
    # named, it is the client's query that is too broad: a 400 naming the member and what it can sort on
    named = server.get(SEARCH, params={"collections": "epoch-plots,spaceknow-scenes", "sortby": "-datetime"},
                       timeout=300)
    assert named.status_code == 400 and "Epoch" in named.json()["description"], named.text
    assert "sortby" in named.json()["description"]
    # without sortby it pages in its own order: nothing to merge, nothing refused
    alone = server.get(SEARCH, params={"collections": "epoch-plots,spaceknow-scenes", "limit": 5}, timeout=300)
    assert alone.status_code == 200 and len(alone.json()["features"]) == 5, alone.text
    assert "X-Geofed-Partial" not in alone.headers


def plume_truth(sims: Any, window: tuple[str, str], count: int) -> tuple[dict[tuple[str, str], str], int]:
    """The `count` newest plumes in `window` and how many there are, from the simulator's plume list."""
    body = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                    params={"sort": "desc", "limit": count, "datetime": "/".join(window)}).json()
    return {("carbonmapper-plumes", p["plume_id"]): p["scene_timestamp"] for p in body["items"]}, body["total_count"]


def test_plumes_sorted_upstream_are_merged_lazily_and_exactly(start_geofed: Any, sims: Any) -> None:
    server = start_geofed(GEOFED_CACHE_TTL="0")
    window = ("2024-06-01T00:00:00Z", "2024-12-31T00:00:00Z")
    s1 = "sentinelhub:sentinel-1-grd"
    truth = {(s1, i): d for i, d in sentinelhub_truth(sims, s1, window).items()}
    plumes, total = plume_truth(sims, window, 200)
    truth.update(plumes)
    wanted = 45
    expected = default_order(list(truth), truth)[:wanted]
    assert any(c == s1 for c, _ in expected) and any(c != s1 for c, _ in expected), "both members take part"
    sims.clear("carbonmapper")
    client = Client.open(f"{server.url}/stac", timeout=300)  # no trailing slash, as users type it
    search = client.search(collections=["carbonmapper-plumes", s1], datetime="/".join(window), limit=10,
                           max_items=wanted, sortby="-datetime")
    got = [(i["collection"], i["id"]) for i in search.items_as_dicts()]
    assert got == expected
    plume_calls = len(sims.log("carbonmapper", "/plumes/annotated"))
    assert 0 < plume_calls <= 8 < total // 100, f"{plume_calls} plume calls for {total} plumes: not a lazy read"


def test_landing_page_without_trailing_slash(geofed: Any) -> None:
    client = Client.open(f"{geofed.url}/stac", timeout=120)
    assert client.id == "geofed" and client.conforms_to("ITEM_SEARCH")
    for extension in ("SORT", "FIELDS", "FILTER", "COLLECTIONS", "FEATURES"):
        assert client.conforms_to(extension), f"pystac-client does not see {extension}"
    assert "sentinelhub:sentinel-2-l2a" in {c.id for c in client.get_collections()}
    items = list(client.search(collections=SH_COLLECTIONS[:1], datetime="/".join(WINDOW), max_items=3).items())
    assert len(items) == 3
