"""SpaceKnow processes end to end: `spaceknow-check-area` (sync, OWSLib) and `spaceknow-analysis` (a job that spends
credits: API key, budget check by dry run, Kraken release, results and grid files served through geofed).

The truth comes from the simulator: its archive, its own check-area answer and its grid files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import shapely.geometry
from owslib.ogcapi.processes import Processes

from simulators import DEMO_CREDENTIALS
from tests.conftest import GeofedServer, launch_geofed

ANALYSIS = "/processes/spaceknow-analysis/execution"
KEY = "sk-test-key-0123456789"
ASYNC = {"Prefer": "respond-async"}


pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")


@pytest.fixture(scope="module")
def keyed(geofed_env_vars: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeofedServer]:
    """One server with API keys configured for this module (the session server runs open, as a demo would)."""
    env = {**geofed_env_vars, "GEOFED_API_KEYS": f"other-key,{KEY}", "GEOFED_SPACEKNOW_PIPELINE_DEADLINE": "8"}
    server = launch_geofed(env,
                           tmp_path_factory.mktemp("geofed-keyed"))
    yield server
    server.stop()


def sim_headers(sims: Any) -> dict[str, str]:
    creds = DEMO_CREDENTIALS["spaceknow"]
    login = sims.post("spaceknow", "/auth0/oauth/ro", json={
        "client_id": "hmWJcfhRouDOaJK2L8asREMlMrv3jFE1", "username": creds["username"], "password": creds["password"],
        "connection": "Username-Password-Authentication", "grant_type": "password", "scope": "openid"})
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['id_token']}"}


def a_scene(sims: Any, dataset: str, region: str) -> dict[str, Any]:
    return next(s for s in sims.get("spaceknow", "/_sim/archive").json()
                if s["dataset"] == dataset and s["region"] == region)


def inside(scene: dict[str, Any], size: float = 0.02) -> dict[str, Any]:
    centre = shapely.geometry.shape(scene["footprint"]).centroid
    return shapely.geometry.mapping(centre.buffer(size, cap_style="square"))


def analysis_inputs(scene: dict[str, Any], budget: float) -> dict[str, Any]:
    return {"inputs": {"mapTypes": ["aircraft"], "sceneIds": [scene["sceneId"]], "extent": inside(scene),
                       "max_credits": budget}}


def test_check_area_returns_the_upstream_cost(geofed: Any, sims: Any) -> None:
    scene = a_scene(sims, "pleiades", "four-corners")
    area = inside(scene, 0.03)
    expected = sims.post("spaceknow", "/credits/check-area", headers=sim_headers(sims),
                         json={"sceneIds": [scene["sceneId"]], "geojson": area}).json()
    sims.clear("spaceknow")
    result = Processes(geofed.url, timeout=60).execute(
        "spaceknow-check-area", inputs={"sceneIds": [scene["sceneId"]], "geometry": area})
    if "outputs" in result:  # OWSLib asks for a document response: pygeoapi wraps the outputs
        result = result["outputs"][0]
    assert result == {"cost": expected["cost"], "km2": expected["km2"]}
    assert expected["km2"] > 10
    assert len(sims.log("spaceknow", "/credits/check-area")) == 1


def test_check_area_refuses_bad_geometry(geofed: Any, sims: Any) -> None:
    scene = a_scene(sims, "pleiades", "four-corners")
    polar = {"type": "Polygon", "coordinates": [[[0, 86], [1, 86], [1, 87], [0, 86]]]}
    for geometry in (polar, {"type": "Polygon"}):
        response = geofed.post("/processes/spaceknow-check-area/execution",
                               json={"inputs": {"sceneIds": [scene["sceneId"]], "geometry": geometry}})
        assert response.status_code == 400, response.text
        assert "geometry" in response.text
    assert not sims.log("spaceknow", "/credits/check-area")


def test_analysis_needs_an_api_key(keyed: GeofedServer, sims: Any) -> None:
    scene = a_scene(sims, "pleiades", "permian-basin")
    response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers=ASYNC)
    assert response.status_code == 401, response.text
    wrong = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers={**ASYNC, "X-API-Key": "nope"})
    assert wrong.status_code == 403, wrong.text
    assert not sims.log("spaceknow", "/kraken/")
    assert KEY not in keyed.log_text() and "nope" not in keyed.log_text()


def test_analysis_over_budget_is_refused_with_the_estimate(keyed: Any, sims: Any) -> None:
    scene = a_scene(sims, "pleiades", "permian-basin")
    jobs_before = keyed.get("/jobs", headers={"X-API-Key": KEY}).json()["jobs"]
    response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 0.5),
                          headers={**ASYNC, "Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400, response.text
    # the estimate shown is the simulator's dry run for exactly these inputs
    dry = sims.post("spaceknow", "/kraken/dry-run/initiate", headers=sim_headers(sims), json={
        "dryRuns": [{"mapTypes": ["aircraft"], "scenes": [[scene["sceneId"]]]}], "extent": inside(scene)}).json()
    headers = sim_headers(sims)
    while sims.post("spaceknow", "/tasking/get-status", headers=headers,
                    json={"pipelineId": dry["pipelineId"]}).json()["status"] != "RESOLVED":
        pass
    estimate = sims.post("spaceknow", "/kraken/dry-run/retrieve", headers=headers,
                         json={"pipelineId": dry["pipelineId"]}).json()["allocatedCredits"]
    assert estimate > 0.5
    assert f"{estimate:g} credits" in response.text and "max_credits" in response.text
    assert len(sims.log("spaceknow", "/kraken/dry-run/initiate")) == 2  # geofed's and ours
    assert not sims.log("spaceknow", "/kraken/release/initiate")
    # refused before anything ran: no job was accepted
    assert keyed.get("/jobs", headers={"X-API-Key": KEY}).json()["jobs"] == jobs_before


def wait_for(server: Any, job_id: str, timeout: float = 60) -> tuple[dict[str, Any], list[str]]:
    statuses: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = server.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY}).json()
        if not statuses or statuses[-1] != doc["status"]:
            statuses.append(doc["status"])
        if doc["status"] in ("successful", "failed", "dismissed"):
            return doc, statuses
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not final after {timeout} s: {statuses}")


def test_analysis_job_runs_to_successful_and_results_resolve(keyed: Any, sims: Any) -> None:
    sims.post("spaceknow", "/_sim/config", json={"polls": 6}).raise_for_status()  # long enough to see it run
    try:
        scene = a_scene(sims, "pleiades", "permian-basin")
        response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers={**ASYNC, "X-API-Key": KEY})
        assert response.status_code == 201, response.text
        job_id = response.json()["jobID"]
        assert keyed.get(f"/jobs/{job_id}").status_code == 404  # another caller cannot see it
        doc, statuses = wait_for(keyed, job_id)
    finally:
        sims.post("spaceknow", "/_sim/config", json={"polls": 2})
    assert doc["status"] == "successful", doc
    assert "running" in statuses or "accepted" in statuses
    assert len(sims.log("spaceknow", "/kraken/release/initiate")) == 1

    results = keyed.get(f"/jobs/{job_id}/results", headers={"X-API-Key": KEY})
    assert results.status_code == 200, results.text
    body = results.json()
    assert body["mapId"] and body["maxZoom"] >= 8 and body["tiles"]
    names = {"detections.geojson", "segmentation.png", "metadata.json"}  # aircraft grid files
    assert len(body["gridFiles"]) == len(body["tiles"]) * len(names)
    link = next(f for f in body["gridFiles"] if f["href"].endswith("segmentation.png"))
    assert link["href"].startswith(f"{keyed.url}/jobs/{job_id}/results/files/")
    assert sims.url("spaceknow") not in results.text

    served = httpx.get(link["href"], headers={"X-API-Key": KEY}, timeout=30)
    assert served.status_code == 200, served.text
    zoom, x, y, name = link["href"].rsplit("/", 1)[1].split("-", 3)  # which tile geofed says this file is
    assert [int(zoom), int(x), int(y)] in body["tiles"] and name == "segmentation.png"
    upstream = sims.get("spaceknow", f"/kraken/grid/{body['mapId']}/-/{zoom}/{x}/{y}/{name}")
    assert served.headers["content-type"] == "image/png"
    assert served.content == upstream.content and served.content.startswith(b"\x89PNG")
    missing = httpx.get(f"{keyed.url}/jobs/{job_id}/results/files/1-2-3-nothing.png",
                        headers={"X-API-Key": KEY}, timeout=30)
    assert missing.status_code == 404, missing.text


def test_failed_release_fails_the_job(keyed: Any, sims: Any) -> None:
    sims.post("spaceknow", "/_sim/config", json={"fail_pipelines": 1, "fail_path": "release"}).raise_for_status()
    try:
        scene = a_scene(sims, "PSScene", "upper-silesia")
        response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers={**ASYNC, "X-API-Key": KEY})
        assert response.status_code == 201, response.text
        doc, _ = wait_for(keyed, response.json()["jobID"])
    finally:
        sims.post("spaceknow", "/_sim/config", json={"fail_pipelines": 0, "fail_path": ""})
    assert doc["status"] == "failed"
    assert "SpaceKnow" in doc["message"] and "pipeline" in doc["message"]


def test_pipeline_past_its_deadline_is_a_504(keyed: Any, sims: Any) -> None:
    sims.post("spaceknow", "/_sim/config", json={"polls": 10_000}).raise_for_status()
    try:
        scene = a_scene(sims, "spot", "hassi-messaoud")
        response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers={**ASYNC, "X-API-Key": KEY})
    finally:
        sims.post("spaceknow", "/_sim/config", json={"polls": 2})
    assert response.status_code == 504, response.text
    assert "SpaceKnow" in response.text and "dry-run pipeline" in response.text
    assert not sims.log("spaceknow", "/kraken/release/initiate")
