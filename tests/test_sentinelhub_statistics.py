"""`sentinelhub-statistics` through the running geofed server (OWSLib and httpx), against the simulator.

Truth: the request geofed sent is read back from the simulator (`/_sim/bodies`) and replayed to the simulator
directly; geofed's time series must equal that answer value for value. The STAC face is checked with
pystac-client.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import httpx
import pytest
from owslib.ogcapi.processes import Processes
from pystac_client import Client
from shapely.geometry import box

from simulators import AUX_PATHS, DEMO_CREDENTIALS
from simulators.framework import SimulatorState
from simulators.sentinelhub.data import Catalog as SimulatedCatalog

PROCESS = "sentinelhub-statistics"
POLYGON = {"type": "Polygon", "coordinates": [[[13.60, 45.55], [13.85, 45.55], [13.85, 45.75], [13.60, 45.75],
                                               [13.60, 45.55]]]}
GOOD = {"geometry": POLYGON, "collection": "sentinel-2-l2a", "start": "2023-05-01", "end": "2023-08-31",
        "interval": "P10D", "index": "NDVI", "resolution": 20, "max_cloud_coverage": 40}


def _execute(geofed: Any, inputs: dict[str, Any]) -> httpx.Response:
    return geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": inputs})


def _sim_token(sims: Any) -> str:
    form = {"grant_type": "client_credentials", **DEMO_CREDENTIALS["sentinelhub"]}
    response = sims.post("sentinelhub", AUX_PATHS["sentinelhub"]["token_url"], data=form)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _sent_statistics_bodies(sims: Any) -> list[dict[str, Any]]:
    return [b["body"] for b in sims.get("sentinelhub", "/_sim/bodies").json() if b["path"].endswith("/statistics")]


def test_statistics_for_a_polygon_equal_the_simulator_values(geofed: Any, sims: Any) -> None:
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/bodies").raise_for_status()
    result = Processes(geofed.url).execute(PROCESS, GOOD, response="raw")  # OWSLib, sync execution
    assert result["collection"] == "sentinel-2-l2a" and result["index"] == "NDVI"
    assert result["interval"] == "P10D" and result["resolution"] == 20

    sent = _sent_statistics_bodies(sims)
    assert len(sent) == 1
    request = sent[0]
    aggregation = request["aggregation"]
    assert aggregation["timeRange"] == {"from": "2023-05-01T00:00:00Z", "to": "2023-09-01T00:00:00Z"}
    assert aggregation["aggregationInterval"]["of"] == "P10D"
    assert request["input"]["data"] == [{"type": "sentinel-2-l2a", "dataFilter": {"maxCloudCoverage": 40}}]
    assert all(band in aggregation["evalscript"] for band in ("B04", "B08", "dataMask"))
    lat = 45.65  # 20 m in degrees at the polygon's latitude, within 1 %
    assert aggregation["resx"] == pytest.approx(20 / (111_320 * math.cos(math.radians(lat))), rel=0.01)
    assert aggregation["resy"] == pytest.approx(20 / 110_574, rel=0.01)

    truth = sims.post("sentinelhub", "/api/v1/statistics", json=request,
                      headers={"Authorization": f"Bearer {_sim_token(sims)}"}).json()["data"]
    assert len(truth) >= 5
    assert [row["interval"] for row in result["series"]] == [t["interval"] for t in truth]
    for row, upstream in zip(result["series"], truth, strict=True):
        stats = upstream["outputs"]["index"]["bands"]["B0"]["stats"]
        for key in ("mean", "min", "max", "stDev", "sampleCount", "noDataCount"):
            assert row[key] == stats[key], key
        assert -1 <= row["min"] <= row["mean"] <= row["max"] <= 1


def test_only_intervals_with_clear_enough_acquisitions_are_listed(geofed: Any) -> None:
    cloudy = _execute(geofed, {**GOOD, "max_cloud_coverage": 5, "interval": "P1D"})
    assert cloudy.status_code == 200, cloudy.text
    days = {row["interval"]["from"][:10] for row in cloudy.json()["series"]}
    site = box(13.60, 45.55, 13.85, 45.75)
    expected = {r.when.strftime("%Y-%m-%d") for r in SimulatedCatalog(SimulatorState("sentinelhub", seed=42))
                .records["sentinel-2-l2a"] if r.cloud is not None and r.cloud <= 5 and r.geometry.intersects(site)
                and dt.datetime(2023, 5, 1, tzinfo=dt.UTC) <= r.when < dt.datetime(2023, 9, 1, tzinfo=dt.UTC)}
    assert days == expected and days


def test_process_description_has_schemas_and_an_example(geofed: Any) -> None:
    description = Processes(geofed.url).process(PROCESS)
    assert description["id"] == PROCESS
    assert "sync-execute" in description["jobControlOptions"]
    inputs = description["inputs"]
    assert {"geometry", "collection", "start", "end", "interval", "index", "evalscript", "resolution",
            "max_cloud_coverage"} <= set(inputs)
    assert inputs["index"]["schema"]["enum"] == ["NDVI", "NDWI", "NBR"]
    assert inputs["geometry"]["minOccurs"] == 1
    assert "series" in description["outputs"]["statistics"]["schema"]["properties"]
    assert all(spec.get("description") for spec in [*inputs.values(), *description["outputs"].values()])
    example = description["example"]["inputs"]  # runs as published on the demo's data (issue 19 §4)
    answer = _execute(geofed, example)
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"] and all(row["mean"] is not None for row in answer.json()["series"])


def test_an_unknown_collection_names_the_valid_ones(geofed: Any) -> None:
    response = _execute(geofed, {**GOOD, "collection": "landsat-9-l2"})
    assert response.status_code == 404, response.text
    assert "sentinel-1-grd, sentinel-2-l1c, sentinel-2-l2a" in response.text and "/stac/collections" in response.text


@pytest.mark.parametrize(
    ("change", "status", "parameter"),
    [
        ({"geometry": None}, 400, "geometry"),
        ({"geometry": {"type": "Point", "coordinates": [13.7, 45.6]}}, 400, "geometry"),
        ({"interval": "every day"}, 400, "interval"),
        ({"collection": "landsat-9-l2"}, 404, "collection"),
        ({"collection": "sentinel-1-grd", "max_cloud_coverage": None}, 400, "index"),
        ({"evalscript": "//VERSION=3 ..."}, 400, "evalscript"),
        ({"start": "2023-09-01"}, 400, "start"),
        ({"end": "yesterday"}, 400, "end"),
        ({"max_cloud_coverage": 140}, 400, "max_cloud_coverage"),
    ],
)
def test_bad_input_is_a_clear_4xx(geofed: Any, change: dict[str, Any], status: int, parameter: str) -> None:
    inputs = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    response = _execute(geofed, inputs)
    assert response.status_code == status, response.text
    assert parameter in response.text
    assert "Traceback" not in response.text


def test_upstream_rejection_is_400_with_its_message(geofed: Any) -> None:
    response = _execute(geofed, {**GOOD, "resolution": 1})  # too many pixels for the Statistical API
    assert response.status_code == 400, response.text
    assert "Sentinel Hub" in response.text and "2500 pixels" in response.text


def test_upstream_failure_is_502_naming_sentinel_hub(geofed: Any, sims: Any) -> None:
    sims.faults("sentinelhub", status=500, count=1, path="/api/v1/statistics")
    response = _execute(geofed, {**GOOD, "start": "2023-06-01"})
    assert response.status_code == 502, response.text
    assert "Sentinel Hub" in response.text
    assert DEMO_CREDENTIALS["sentinelhub"]["client_secret"] not in response.text


def test_stac_face_search_equals_simulator_truth(geofed: Any) -> None:
    landing = geofed.get("/stac/")
    assert landing.status_code == 200, landing.text  # a broken STAC face fails here, it is not skipped
    client = Client.open(f"{geofed.url}/stac/", timeout=60)
    area = (12.0, 45.0, 15.0, 46.5)
    search = client.search(collections=["sentinelhub:sentinel-2-l2a"], bbox=area,
                           datetime="2023-01-01T00:00:00Z/2023-12-31T23:59:59Z", filter="eo:cloud_cover < 20",
                           filter_lang="cql2-text", limit=50, max_items=1000)
    found = {item.id for item in search.items()}
    site = box(*area)
    truth = {r.item["id"] for r in SimulatedCatalog(SimulatorState("sentinelhub", seed=42)).records["sentinel-2-l2a"]
             if r.cloud is not None and r.cloud < 20 and r.geometry.intersects(site) and r.when.year == 2023}
    assert len(truth) > 50
    assert found == truth
