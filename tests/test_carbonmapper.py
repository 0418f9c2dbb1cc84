"""CarbonMapper end to end: a real geofed server on the simulator, read through GDAL, OWSLib and httpx.

Truth comes from the simulator's own API (read directly), never from geofed's code.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import httpx
import pytest
from owslib.ogcapi.features import Features

from simulators.carbonmapper.data import GASES, INSTRUMENTS, QUALITIES, SECTORS

PERMIAN = (-104.2, 31.6, -103.2, 32.4)
DELHI = (76.7, 28.2, 77.5, 29.0)


def truth_plumes(sims: Any, **params: Any) -> list[dict[str, Any]]:
    """Every plume the simulator returns for `params` (REST encoding: repeated bbox keys)."""
    query: list[tuple[str, Any]] = [(k, v) for k, v in params.items() if k != "bbox"]
    query += [("bbox", v) for v in params.get("bbox", ())]
    out: list[dict[str, Any]] = []
    while True:
        body = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                        params=[*query, ("limit", 1000), ("offset", len(out))]).json()
        out += body["items"]
        if len(out) >= body["total_count"] or not body["items"]:
            return out


def follow(url: str, params: dict[str, Any] | None = None, max_pages: int = 200) -> list[dict[str, Any]]:
    """Pages through an OGC items response by its `next` links; returns the pages."""
    pages = []
    response = httpx.get(url, params=params, timeout=60)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            return pages
        assert len(pages) < max_pages, "next links never end"
        response = httpx.get(nxt[0], timeout=60)


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="REQUIRES-TOOL: ogrinfo (gdal-bin)")
def test_ogrinfo_lists_collections_and_counts_a_bbox(geofed: Any, sims: Any) -> None:
    listing = subprocess.run(["timeout", "60", "ogrinfo", "-ro", "-so", f"OAPIF:{geofed.url}"],
                             capture_output=True, text=True, check=True).stdout
    for collection in ("carbonmapper-plumes", "carbonmapper-sources", "carbonmapper-scenes"):
        assert collection in listing
    w, s, e, n = PERMIAN
    info = subprocess.run(["timeout", "120", "ogrinfo", "-ro", "-so", "-spat", str(w), str(s), str(e), str(n),
                           f"OAPIF:{geofed.url}", "carbonmapper-plumes"], capture_output=True, text=True,
                          check=True).stdout
    count = int(info.split("Feature Count:")[1].split()[0])
    truth = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                     params=[("bbox", v) for v in PERMIAN] + [("limit", 1)]).json()["total_count"]
    assert count == truth > 0


def test_owslib_cql2_gas_and_emission(geofed: Any, sims: Any) -> None:
    api = Features(geofed.url)
    ids: list[str] = []
    offset = 0
    while True:
        page = api.collection_items("carbonmapper-plumes", filter="gas='CH4' AND emission_auto > 1000",
                                    bbox=list(PERMIAN), limit=10, offset=offset)
        ids += [f["id"] for f in page["features"]]
        if not any(link["rel"] == "next" for link in page["links"]):
            break
        offset += 10
    truth = {p["plume_id"] for p in truth_plumes(sims, plume_gas="CH4", bbox=PERMIAN)
             if p["emission_auto"] is not None and p["emission_auto"] > 1000}
    assert len(ids) == len(set(ids))
    assert set(ids) == truth and len(truth) > 20  # several pages


@pytest.mark.parametrize("filter_", [None, "wind_speed_avg_auto > 3"])
def test_paging_limit_7_yields_each_plume_once(geofed: Any, sims: Any, filter_: str | None) -> None:
    params: dict[str, Any] = {"bbox": ",".join(map(str, DELHI)), "limit": 7, "f": "json"}
    if filter_:
        params["filter"] = filter_
    pages = follow(f"{geofed.url}/collections/carbonmapper-plumes/items", params)
    ids = [f["id"] for page in pages for f in page["features"]]
    truth = {p["plume_id"] for p in truth_plumes(sims, bbox=DELHI)
             if not filter_ or p["wind_speed_avg_auto"] > 3}
    assert len(ids) == len(set(ids)) and set(ids) == truth and len(truth) > 14
    filled = [page for page in pages if page["features"]]
    for page in filled[:-1]:
        assert len(page["features"]) == 7  # never short while more matches exist
    for page in pages:
        has_next = any(link["rel"] == "next" for link in page["links"])
        assert page["features"] or not has_next  # never empty with a next link


def test_hits_uses_total_count(geofed: Any, sims: Any) -> None:
    hits = geofed.get("/collections/carbonmapper-plumes/items",
                      params={"resulttype": "hits", "gas": "CO2", "instrument": "emi", "f": "json"}).json()
    truth = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                     params={"plume_gas": "CO2", "instruments": "emi", "limit": 1}).json()["total_count"]
    assert hits["numberMatched"] == truth > 0
    assert hits["features"] == []


def test_links_resolve_plume_scene_source(geofed: Any, sims: Any) -> None:
    page = geofed.get("/collections/carbonmapper-plumes/items",
                      params={"bbox": ",".join(map(str, DELHI)), "limit": 5, "f": "json"}).json()
    plume = next(f for f in page["features"] if f["properties"]["source_name"])
    related = {link["title"].split()[0]: link["href"] for link in plume["links"] if link["rel"] == "related"}
    scene = httpx.get(related["Scene"], params={"f": "json"}, timeout=60).json()
    assert scene["id"] == plume["id"].rsplit("-", 1)[0]
    source = httpx.get(related["Source"], params={"f": "json"}, timeout=60).json()
    truth = sims.get("carbonmapper", f"/api/v1/catalog/source/plume/name/{plume['id']}").json()
    assert source["id"] == truth["source_name"] == plume["properties"]["source_name"]
    assert plume["id"] in source["properties"]["plume_ids"]
    for item in (scene, source):  # scene → its plumes, source → its plumes: both contain this plume
        href = next(link["href"] for link in item["links"] if link["rel"] == "related")
        plumes = [f["id"] for p in follow(href, {"f": "json", "limit": 1000}) for f in p["features"]]
        assert plume["id"] in plumes
    for link in plume["links"]:
        if link["rel"] in ("preview", "enclosure"):
            response = httpx.get(link["href"], timeout=30)
            assert response.status_code == 200
            assert response.headers["content-type"].split(";")[0] == link["type"].split(";")[0]
    single = geofed.get(f"/collections/carbonmapper-plumes/items/{plume['id']}", params={"f": "json"}).json()
    assert single["properties"]["source_name"] == plume["properties"]["source_name"]


def test_sources_and_scenes_filters(geofed: Any, sims: Any) -> None:
    sources = geofed.get("/collections/carbonmapper-sources/items",
                         params={"gas": "CO2", "limit": 1000, "f": "json"}).json()
    truth = sims.get("carbonmapper", "/api/v1/catalog/sources.geojson", params={"plume_gas": "CO2"}).json()
    assert {f["id"] for f in sources["features"]} == {f["properties"]["source_name"] for f in truth["features"]}
    assert any("plume_gas=CO2" in e["query"] for e in sims.log("carbonmapper", "sources.geojson"))
    scenes = geofed.get("/collections/carbonmapper-scenes/items",
                        params={"instrument": "tan", "bbox": ",".join(map(str, DELHI)), "resulttype": "hits",
                                "f": "json"}).json()
    truth_scenes = sims.get("carbonmapper", "/api/v1/catalog/scenes/annotated", params=[
        ("instruments", "tan"), ("cloud_cover_pct_max", 100), ("limit", 1), *[("bbox", v) for v in DELHI]]).json()
    assert scenes["numberMatched"] == truth_scenes["count"] > 0


def test_queryables_list_enums(geofed: Any) -> None:
    body = geofed.get("/collections/carbonmapper-plumes/queryables", params={"f": "json"}).json()["properties"]
    assert body["gas"]["enum"] == list(GASES)
    assert body["sector"]["enum"] == list(SECTORS) and body["instrument"]["enum"] == list(INSTRUMENTS)
    assert body["plume_quality"]["enum"] == list(QUALITIES)
    assert body["emission_auto"]["type"] == "number"


@pytest.mark.parametrize(("collection", "params", "needle"), [
    ("carbonmapper-plumes", {"gas": "N2O"}, ", ".join(GASES)),
    ("carbonmapper-plumes", {"sector": "9Z"}, ", ".join(SECTORS)),
    ("carbonmapper-plumes", {"instrument": "xyz"}, ", ".join(INSTRUMENTS)),
    ("carbonmapper-plumes", {"plume_quality": "great"}, ", ".join(QUALITIES)),
    ("carbonmapper-plumes", {"filter": "emission_auto > 'lots'"}, "emission_auto"),
    ("carbonmapper-plumes", {"emission_auto": "lots"}, "emission_auto"),
    ("carbonmapper-plumes", {"bbox": "1,2,3"}, "bbox"),
    ("carbonmapper-plumes", {"bbox": "10,50,0,40"}, "maxy"),  # pygeoapi checks bbox itself
    ("carbonmapper-sources", {"sector": "9Z"}, ", ".join(SECTORS)),
    ("carbonmapper-scenes", {"instrument": "xyz"}, ", ".join(INSTRUMENTS)),
])
def test_bad_input_is_400(geofed: Any, collection: str, params: dict[str, str], needle: str) -> None:
    response = geofed.get(f"/collections/{collection}/items", params={**params, "f": "json"})
    assert response.status_code == 400, response.text
    assert needle in response.json()["description"]


@pytest.mark.parametrize("collection", ["carbonmapper-plumes", "carbonmapper-sources", "carbonmapper-scenes"])
def test_unknown_id_is_404(geofed: Any, collection: str) -> None:
    response = geofed.get(f"/collections/{collection}/items/CH4_6A_100m_0.00000_0.00000", params={"f": "json"})
    assert response.status_code == 404


def test_upstream_failure_is_503_naming_carbonmapper(geofed: Any, sims: Any) -> None:
    sims.faults("carbonmapper", status=503, path="/plumes/annotated")
    response = geofed.get("/collections/carbonmapper-plumes/items",
                          params={"sector": "6B", "instrument": "ssc", "limit": 3, "f": "json"})
    assert response.status_code == 503
    assert "CarbonMapper" in response.json()["description"]


def test_expired_token_is_refreshed_and_never_leaks(geofed: Any, sims: Any) -> None:
    assert geofed.get("/collections/carbonmapper-plumes/items", params={"limit": 1, "f": "json"}).status_code == 200
    sims.expire_tokens("carbonmapper")
    sims.clear("carbonmapper")
    response = geofed.get("/collections/carbonmapper-plumes/items",
                          params={"gas": "CH4", "sector": "4B", "limit": 2, "f": "json"})
    assert response.status_code == 200 and response.json()["numberReturned"] == 2
    assert sims.log("carbonmapper", "/api/v1/token/refresh", method="POST")
    assert "demo-password" not in response.text and "Bearer" not in response.text
