"""`spaceknow-scenes` end to end: httpx / pystac-client → geofed (real server) → the SpaceKnow simulator.

The truth is the simulator's scene archive (`/_sim/archive`), filtered here with shapely; faults (failed
pipelines, expired tokens) are injected through the simulator. Every test uses its own bbox or datetime, so
geofed's search cache (which lives in the server) never answers one test with another's search.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import pytest
import shapely.geometry
from pystac.validation import validate_dict
from pystac_client import Client

from providers.spaceknow.sources import SceneSource
from simulators import DEMO_CREDENTIALS
from tests.conftest import offline_stac_validator

COLLECTION = "spaceknow-scenes"
ITEMS = f"/collections/{COLLECTION}/items"
SEARCH = "/imagery/search/initiate"
OPTIONS = SceneSource.collection.options  # the collection's declared defaults (datasets, areas)


pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")


def archive(sims: Any) -> list[dict[str, Any]]:
    return sims.get("spaceknow", "/_sim/archive").json()


def truth(sims: Any, bbox: tuple[float, float, float, float], keep: Any = lambda s: True) -> set[str]:
    box = shapely.geometry.box(*bbox)
    return {s["sceneId"] for s in archive(sims) if keep(s) and shapely.geometry.shape(s["footprint"]).intersects(box)}


def bbox_param(bbox: tuple[float, ...]) -> str:
    return ",".join(str(c) for c in bbox)


def items(geofed: Any, **params: Any) -> Any:
    return geofed.get(ITEMS, params={"f": "json", **params})


def test_bbox_query_pages_one_pipeline(geofed: Any, sims: Any) -> None:
    bbox = (-104.3, 31.0, -102.1, 32.9)
    expected = truth(sims, bbox, lambda s: s["provider"] == "pl")
    assert 20 < len(expected) < 100  # one upstream page: the whole query is one pipeline
    size = math.ceil(len(expected) / 5)
    seen: list[str] = []
    for page in range(5):
        response = items(geofed, bbox=bbox_param(bbox), provider="pl", limit=size, offset=page * size)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["numberMatched"] == len(expected)
        seen.extend(f["id"] for f in body["features"])
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    assert len(sims.log("spaceknow", SEARCH)) == 1
    assert len(sims.log("spaceknow", "/tasking/get-status")) >= 1


def test_feature_properties_come_from_the_scene(geofed: Any, sims: Any) -> None:
    bbox = (-109.1, 36.1, -108.0, 37.0)
    expected = {s["sceneId"]: s for s in archive(sims) if s["dataset"] == "pleiades"
                and shapely.geometry.shape(s["footprint"]).intersects(shapely.geometry.box(*bbox))}
    assert expected
    body = items(geofed, bbox=bbox_param(bbox), dataset="pleiades", limit=100).json()
    assert {f["id"] for f in body["features"]} == set(expected)
    feature = body["features"][0]
    scene = expected[feature["id"]]
    props = feature["properties"]
    assert props["datetime"] == scene["datetime"].replace(" ", "T") + "Z"
    assert (props["provider"], props["dataset"], props["satellite"]) == ("ab", "pleiades", scene["satellite"])
    assert props["view:off_nadir"] == scene["offNadir"]
    assert props["view:sun_azimuth"] == scene["sunAzimuth"]
    assert props["view:sun_elevation"] == scene["sunElevation"]
    assert props["view:azimuth"] == scene["satelliteAzimuth"]
    assert props["proj:code"] == f"EPSG:{scene['crsEpsg']}"
    assert [b["gsd"] for b in props["spaceknow:bands"]] == [b["gsd"] for b in scene["bands"]]
    assert shapely.geometry.shape(feature["geometry"]).equals(shapely.geometry.shape(scene["footprint"]))
    dates = [f["properties"]["datetime"] for f in body["features"]]
    assert dates == sorted(dates, reverse=True)  # newest first

    one = geofed.get(f"/collections/{COLLECTION}/items/{feature['id']}", params={"f": "json"})
    assert one.status_code == 200, one.text
    assert one.json()["properties"] == props
    assert sims.log("spaceknow", "/imagery/get-metadata")


def test_datetime_is_pushed_down(geofed: Any, sims: Any) -> None:
    bbox = (-104.4, 30.9, -101.6, 33.1)
    expected = truth(sims, bbox, lambda s: s["provider"] == "pl" and "2024-03-01" <= s["datetime"] < "2024-07-01")
    body = items(geofed, bbox=bbox_param(bbox), provider="pl", limit=200,
                 datetime="2024-03-01T00:00:00Z/2024-06-30T23:59:59Z").json()
    assert {f["id"] for f in body["features"]} == expected


def test_wide_bbox_is_split_into_windows_and_merged(geofed: Any, sims: Any) -> None:
    bbox = (-109.5, 31.0, -100.0, 33.0)  # about 900 km wide at 31° N
    expected = truth(sims, bbox, lambda s: s["provider"] == "pl")
    body = items(geofed, bbox=bbox_param(bbox), provider="pl", limit=1000).json()
    ids = [f["id"] for f in body["features"]]
    assert len(ids) == len(set(ids)), "a scene seen by two windows must be returned once"
    assert set(ids) == expected
    searches = sims.log("spaceknow", SEARCH)
    assert len(searches) >= 3
    assert all(e["status"] == 200 for e in searches), "every window must be small enough for SpaceKnow"


def test_bbox_over_the_window_cap_is_refused(geofed: Any, sims: Any) -> None:
    response = items(geofed, bbox="-125,25,-65,49")
    assert response.status_code == 400, response.text
    text = response.text
    assert "bbox" in text and "16" in text
    assert not sims.log("spaceknow", SEARCH)


def test_no_bbox_answers_from_the_default_areas(geofed: Any, sims: Any) -> None:
    datasets = {(d["provider"], d["dataset"]) for d in OPTIONS["datasets"]}
    areas = [shapely.geometry.box(*a["bbox"]) for a in OPTIONS["default_areas"]]
    expected = {s["sceneId"] for s in archive(sims) if (s["provider"], s["dataset"]) in datasets
                and any(shapely.geometry.shape(s["footprint"]).intersects(a) for a in areas)}
    response = items(geofed, limit=1000, datetime="2023-01-01T00:00:00Z/..")
    assert response.status_code == 200, response.text
    assert {f["id"] for f in response.json()["features"]} == expected


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="REQUIRES-TOOL: ogrinfo (gdal-bin)")
def test_ogrinfo_reads_the_whole_layer_and_a_wide_bbox(geofed: Any, sims: Any) -> None:
    datasets = {(d["provider"], d["dataset"]) for d in OPTIONS["datasets"]}
    areas = [shapely.geometry.box(*a["bbox"]) for a in OPTIONS["default_areas"]]

    def count(*spat: float) -> int:
        args = ["-spat", *map(str, spat)] if spat else []
        out = subprocess.run(["timeout", "120", "ogrinfo", "-ro", "-so", *args, f"OAPIF:{geofed.url}", COLLECTION],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split("Feature Count:")[1].split()[0])

    whole = {s["sceneId"] for s in archive(sims) if (s["provider"], s["dataset"]) in datasets
             and any(shapely.geometry.shape(s["footprint"]).intersects(a) for a in areas)}
    assert count() == len(whole) > 0
    wide = (-109.4, 31.1, -100.1, 32.9)
    assert count(*wide) == len(truth(sims, wide, lambda s: (s["provider"], s["dataset"]) in datasets)) > 0


def test_unknown_dataset_is_a_400(geofed: Any, sims: Any) -> None:
    response = items(geofed, bbox="-104,31,-103,32", dataset="NoSuchDataset")
    assert response.status_code == 400, response.text
    assert "dataset" in response.text and "NoSuchDataset" in response.text


def test_failed_pipeline_is_a_502_naming_spaceknow(geofed: Any, sims: Any) -> None:
    sims.post("spaceknow", "/_sim/config", json={"fail_pipelines": 1, "fail_path": "search"}).raise_for_status()
    try:
        response = items(geofed, bbox="53.1,38.3,54.0,39.0", provider="ab")
    finally:
        sims.post("spaceknow", "/_sim/config", json={"fail_pipelines": 0, "fail_path": ""})
    assert response.status_code == 502, response.text
    assert "SpaceKnow" in response.text and "pipeline" in response.text
    again = items(geofed, bbox="53.1,38.3,54.0,39.0", provider="ab")  # a failure is never cached
    assert again.status_code == 200, again.text
    assert {f["id"] for f in again.json()["features"]} == truth(sims, (53.1, 38.3, 54.0, 39.0),
                                                                 lambda s: s["provider"] == "ab")


def test_expired_token_is_renewed(geofed: Any, sims: Any) -> None:
    assert items(geofed, bbox="18.3,49.8,18.9,50.1", provider="ab").status_code == 200
    sims.expire_tokens("spaceknow")
    sims.clear("spaceknow")
    response = items(geofed, bbox="18.9,49.8,19.5,50.1", provider="ab")
    assert response.status_code == 200, response.text
    assert len(sims.log("spaceknow", "/auth0/oauth/ro")) == 1
    assert DEMO_CREDENTIALS["spaceknow"]["password"] not in geofed.log_text()


def test_missing_scene_is_a_404(geofed: Any) -> None:
    response = geofed.get(f"/collections/{COLLECTION}/items/NoSuchScene123", params={"f": "json"})
    assert response.status_code == 404, response.text


def test_cql2_filter_is_exact(geofed: Any, sims: Any) -> None:
    bbox = (54.0, 38.5, 55.5, 39.8)
    expected = truth(sims, bbox, lambda s: s["dataset"] in ("PSScene", "pleiades") and s["offNadir"] < 3)
    assert expected
    response = items(geofed, bbox=bbox_param(bbox), limit=500,
                     filter="dataset IN ('PSScene', 'pleiades') AND \"view:off_nadir\" < 3")
    assert response.status_code == 200, response.text
    assert {f["id"] for f in response.json()["features"]} == expected


def test_search_follows_the_cursor(geofed: Any, sims: Any) -> None:
    sims.post("spaceknow", "/_sim/config", json={"page_size": 7}).raise_for_status()
    try:
        bbox = (5.6, 31.3, 6.7, 32.1)
        expected = truth(sims, bbox, lambda s: s["provider"] == "ee" and s["dataset"] != "COPERNICUS/S5P/OFFL/L3_CH4")
        response = items(geofed, bbox=bbox_param(bbox), provider="ee", limit=500,
                         datetime="2023-01-01T00:00:00Z/2024-12-31T23:59:59Z")
    finally:
        sims.post("spaceknow", "/_sim/config", json={"page_size": 100})
    assert response.status_code == 200, response.text
    s5p = truth(sims, bbox, lambda s: s["dataset"] == "COPERNICUS/S5P/OFFL/L3_CH4")  # searched on its own
    assert {f["id"] for f in response.json()["features"]} == expected | s5p
    assert len(sims.log("spaceknow", SEARCH)) == math.ceil(len(expected) / 7) + math.ceil(len(s5p) / 7)


def test_a_lost_cursor_does_not_end_the_search_early(geofed: Any, sims: Any) -> None:
    """Pages after the first come without a cursor although more scenes exist: geofed reads on (the cursors were
    offsets) instead of serving the first two pages as the whole result."""
    sims.post("spaceknow", "/_sim/config", json={"page_size": 2, "lose_cursor_after": 1}).raise_for_status()
    try:
        bbox = (-103.0, 31.0, -102.0, 32.0)
        expected = truth(sims, bbox, lambda s: s["dataset"] == "PSScene")
        assert len(expected) > 4
        response = items(geofed, bbox=bbox_param(bbox), dataset="PSScene", limit=500)
    finally:
        sims.post("spaceknow", "/_sim/config", json={"page_size": 100, "lose_cursor_after": None})
    assert response.status_code == 200, response.text
    assert {f["id"] for f in response.json()["features"]} == expected


def stac_validator() -> Any:
    """Item validation against the repository's offline schema mirror (tests/schemas), core and extensions."""
    validate_offline = offline_stac_validator()

    def validate(item: dict[str, Any]) -> None:
        validate_dict(item, validator=validate_offline)

    return validate

def test_stac_face_serves_the_same_scenes_as_valid_items(geofed: Any, sims: Any) -> None:
    bbox = (-108.9, 36.2, -107.5, 37.3)
    expected = truth(sims, bbox, lambda s: s["provider"] == "ab")
    search = Client.open(f"{geofed.url}/stac/", timeout=60).search(
        collections=[COLLECTION], bbox=list(bbox), filter={"op": "=", "args": [{"property": "provider"}, "ab"]},
        filter_lang="cql2-json", max_items=500, limit=10)
    found = list(search.items_as_dicts())
    assert {i["id"] for i in found} == expected
    validate = stac_validator()
    for item in found[:5]:
        validate(item)
    ogc = items(geofed, bbox=bbox_param(bbox), provider="ab", limit=500).json()["features"]
    by_id = {f["id"]: f for f in ogc}
    for item in found:  # one mapping, two faces
        assert item["properties"] == by_id[item["id"]]["properties"]
        assert item["geometry"] == by_id[item["id"]]["geometry"]


def test_stac_intersects_a_point_finds_the_scenes_covering_it(geofed: Any, sims: Any) -> None:
    scene = next(s for s in archive(sims) if s["provider"] == "ab" and s["region"] == "hassi-messaoud")
    point = shapely.geometry.shape(scene["footprint"]).representative_point()
    expected = {s["sceneId"] for s in archive(sims)
                if s["provider"] == "ab" and shapely.geometry.shape(s["footprint"]).intersects(point)}
    response = geofed.post("/stac/search", json={
        "collections": [COLLECTION], "intersects": shapely.geometry.mapping(point), "limit": 100,
        "filter": "provider='ab'", "filter-lang": "cql2-text"})
    assert response.status_code == 200, response.text
    assert scene["sceneId"] in expected
    assert {i["id"] for i in response.json()["features"]} == expected
