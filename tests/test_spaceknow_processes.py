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


def grid_files(sims: Any, map_type: str) -> set[str]:
    """The grid files SpaceKnow's map-type listing gives for `map_type` (the truth)."""
    listing = sims.post("spaceknow", "/kraken/list-map-types", headers=sim_headers(sims), json={}).json()
    entry = next(m for m in listing if m["mapType"] == map_type)
    return {f for files in entry["gridFiles"].values() for f in files}


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
    (only,) = results.json()["maps"]  # one scene, one single-input map type: one map
    assert only["mapId"] and only["maxZoom"] >= 8 and only["tiles"]
    assert only["mapTypes"] == ["aircraft"] and only["sceneIds"] == [scene["sceneId"]]
    names = grid_files(sims, "aircraft")
    assert len(only["gridFiles"]) == len(only["tiles"]) * len(names)
    link = next(f for f in only["gridFiles"] if f["href"].endswith("segmentation.png"))
    assert link["href"].startswith(f"{keyed.url}/jobs/{job_id}/results/files/")
    assert sims.url("spaceknow") not in results.text

    served = httpx.get(link["href"], headers={"X-API-Key": KEY}, timeout=30)
    assert served.status_code == 200, served.text
    index, zoom, x, y, name = link["href"].rsplit("/", 1)[1].split("-", 4)  # which map and tile geofed says
    assert index == "0" and [int(zoom), int(x), int(y)] in only["tiles"] and name == "segmentation.png"
    upstream = sims.get("spaceknow", f"/kraken/grid/{only['mapId']}/-/{zoom}/{x}/{y}/{name}", follow_redirects=True)
    assert served.headers["content-type"] == "image/png"
    assert served.content == upstream.content and served.content.startswith(b"\x89PNG")
    missing = httpx.get(f"{keyed.url}/jobs/{job_id}/results/files/0-1-2-3-nothing.png",
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


# ----------------------------------------------------------------- issue 14: the doc's group sizes, grid files
def sim_pipeline(sims: Any, operation: str, body: dict[str, Any]) -> httpx.Response:
    """Runs one simulator pipeline directly: the initiate's refusal, or the retrieve answer."""
    headers = sim_headers(sims)
    started = sims.post("spaceknow", f"/kraken/{operation}/initiate", headers=headers, json=body)
    if started.status_code != 200:
        return started
    pid = started.json()["pipelineId"]
    while sims.post("spaceknow", "/tasking/get-status", headers=headers,
                    json={"pipelineId": pid}).json()["status"] != "RESOLVED":
        pass
    return sims.post("spaceknow", f"/kraken/{operation}/retrieve", headers=headers, json={"pipelineId": pid})


def demo_scenes(sims: Any) -> list[dict[str, Any]]:
    """The two overlapping demo scenes the analysis example names (older first)."""
    example = sims_example("spaceknow-analysis")
    by_id = {s["sceneId"]: s for s in sims.get("spaceknow", "/_sim/archive").json()}
    return [by_id[i] for i in example["inputs"]["sceneIds"]]


def sims_example(process_id: str) -> dict[str, Any]:
    from providers.spaceknow.processes import AnalysisProcessor, CheckAreaProcessor

    metadata = {p.PROCESS_METADATA["id"]: p.PROCESS_METADATA for p in (AnalysisProcessor, CheckAreaProcessor)}
    return dict(metadata[process_id]["example"])


def test_simulator_refuses_scene_groups_the_doc_does_not_allow(sims: Any) -> None:
    a, b = demo_scenes(sims)
    extent = inside(a)
    both, one = [a["sceneId"], b["sceneId"]], [a["sceneId"]]
    refused = [
        sim_pipeline(sims, "dry-run", {"dryRuns": [{"mapTypes": ["aircraft"], "scenes": [both]}], "extent": extent}),
        sim_pipeline(sims, "dry-run", {"dryRuns": [{"mapTypes": ["change"], "scenes": [one]}], "extent": extent}),
        sim_pipeline(sims, "release", {"mapTypes": ["imagery"], "sceneIds": both, "extent": extent}),
        sim_pipeline(sims, "release", {"mapTypes": ["aircraft", "change"], "sceneIds": both, "extent": extent}),
    ]
    assert [r.status_code for r in refused] == [400] * 4, [r.text for r in refused]
    assert all(r.json()["error"] == "INVALID-SCENE-GROUP" for r in refused)
    fine = sim_pipeline(sims, "dry-run", {"dryRuns": [{"mapTypes": ["aircraft"], "scenes": [[s] for s in both]},
                                                      {"mapTypes": ["change"], "scenes": [both]}], "extent": extent})
    assert fine.status_code == 200 and len(fine.json()["scenes"]) == 4, fine.text


def test_analysis_budget_is_checked_against_the_grouped_dry_run(keyed: Any, sims: Any) -> None:
    a, b = demo_scenes(sims)
    extent = sims_example("spaceknow-analysis")["inputs"]["extent"]
    both = [a["sceneId"], b["sceneId"]]
    response = keyed.post(ANALYSIS, headers={**ASYNC, "X-API-Key": KEY}, json={"inputs": {
        "mapTypes": ["aircraft", "change"], "sceneIds": both, "extent": extent, "max_credits": 1}})
    assert response.status_code == 400, response.text
    sent = sims.log("spaceknow", "/kraken/dry-run/initiate")
    assert len(sent) == 1
    truth = sim_pipeline(sims, "dry-run", {"extent": extent, "dryRuns": [
        {"mapTypes": ["aircraft"], "scenes": [[s] for s in both]}, {"mapTypes": ["change"], "scenes": [both]}]})
    assert f"{truth.json()['allocatedCredits']:g} credits" in response.text and "3 map(s)" in response.text
    assert not sims.log("spaceknow", "/kraken/release/initiate")


def test_analysis_releases_a_map_per_scene_and_per_pair_with_the_listed_grid_files(keyed: Any, sims: Any) -> None:
    a, b = demo_scenes(sims)
    inputs = {**sims_example("spaceknow-analysis")["inputs"], "mapTypes": ["imagery", "aircraft", "change"]}
    response = keyed.post(ANALYSIS, json={"inputs": inputs}, headers={**ASYNC, "X-API-Key": KEY})
    assert response.status_code == 201, response.text
    doc, _ = wait_for(keyed, response.json()["jobID"])
    assert doc["status"] == "successful", doc
    assert len(sims.log("spaceknow", "/kraken/release/initiate")) == 3  # a, b (imagery+aircraft) and (a, b) change
    maps = keyed.get(f"/jobs/{doc['jobID']}/results", headers={"X-API-Key": KEY}).json()["maps"]
    assert sorted((m["mapTypes"], m["sceneIds"]) for m in maps) == sorted([
        (["imagery", "aircraft"], [a["sceneId"]]), (["imagery", "aircraft"], [b["sceneId"]]),
        (["change"], [a["sceneId"], b["sceneId"]])])
    for entry in maps:  # every grid file of the listing (not a hard-coded table), for every tile
        expected = set().union(*(grid_files(sims, m) for m in entry["mapTypes"]))
        names = {link["href"].rsplit("/", 1)[1].split("-", 4)[4] for link in entry["gridFiles"]}
        assert names == expected and len(entry["gridFiles"]) == len(entry["tiles"]) * len(expected)
    assert {"transport.png", "analysis.geotiff", "visualization.geotiff"} <= grid_files(sims, "aircraft")


def test_grid_download_follows_the_redirect_to_storage(keyed: Any, sims: Any) -> None:
    scene = a_scene(sims, "pleiades", "four-corners")
    response = keyed.post(ANALYSIS, json=analysis_inputs(scene, 1000), headers={**ASYNC, "X-API-Key": KEY})
    assert response.status_code == 201, response.text
    doc, _ = wait_for(keyed, response.json()["jobID"])
    (entry,) = keyed.get(f"/jobs/{doc['jobID']}/results", headers={"X-API-Key": KEY}).json()["maps"]
    link = next(f for f in entry["gridFiles"] if f["href"].endswith("analysis.geotiff"))
    sims.clear("spaceknow")
    served = httpx.get(link["href"], headers={"X-API-Key": KEY}, timeout=30)
    assert served.status_code == 200, served.text
    hops = sims.log("spaceknow", "/grid/")
    assert [h["status"] for h in hops] == [302, 200], hops
    assert "/kraken/grid/" in hops[0]["path"] and "/storage/grid/" in hops[1]["path"]
    assert served.content.startswith(b"II*\x00") and served.headers["content-type"].startswith("image/tiff")


def test_process_descriptions_describe_everything_and_hold_no_placeholder(geofed: Any) -> None:
    for process_id in ("spaceknow-check-area", "spaceknow-analysis"):
        description = geofed.get(f"/processes/{process_id}", params={"f": "json"})
        assert description.status_code == 200, description.text
        body = description.json()
        assert "&lt;" not in description.text and "<" not in str(body["example"]), process_id
        for kind in ("inputs", "outputs"):
            undescribed = [n for n, v in body[kind].items() if not v.get("description")]
            assert not undescribed, (process_id, kind, undescribed)


def test_check_area_example_runs_as_published(geofed: Any, sims: Any) -> None:
    example = geofed.get("/processes/spaceknow-check-area", params={"f": "json"}).json()["example"]
    response = geofed.post("/processes/spaceknow-check-area/execution", json=example)
    assert response.status_code == 200, response.text
    truth = sims.post("spaceknow", "/credits/check-area", headers=sim_headers(sims), json={
        "sceneIds": example["inputs"]["sceneIds"], "geojson": example["inputs"]["geometry"]}).json()
    assert response.json() == truth and truth["km2"] > 1  # the area lies inside the demo scene


def test_analysis_example_runs_as_published(keyed: Any, sims: Any) -> None:
    example = keyed.get("/processes/spaceknow-analysis", params={"f": "json"}).json()["example"]
    response = keyed.post(ANALYSIS, json=example, headers={**ASYNC, "X-API-Key": KEY})
    assert response.status_code == 201, response.text
    doc, _ = wait_for(keyed, response.json()["jobID"])
    assert doc["status"] == "successful", doc
    results = keyed.get(f"/jobs/{doc['jobID']}/results", headers={"X-API-Key": KEY}).json()
    assert len(results["maps"]) == 3 and all(m["gridFiles"] for m in results["maps"])
    assert results["estimate"]["credits"] <= example["inputs"]["max_credits"]


def test_unknown_scene_or_map_type_says_where_the_valid_ones_are(geofed: Any, keyed: Any, sims: Any) -> None:
    example = geofed.get("/processes/spaceknow-check-area", params={"f": "json"}).json()["example"]
    response = geofed.post("/processes/spaceknow-check-area/execution",
                           json={"inputs": {**example["inputs"], "sceneIds": ["NoSuchScene"]}})
    assert response.status_code == 400, response.text
    assert "/collections/spaceknow-scenes/items" in response.text
    inputs = {**sims_example("spaceknow-analysis")["inputs"], "mapTypes": ["aircraft", "tanks"]}
    response = keyed.post(ANALYSIS, json={"inputs": inputs}, headers={**ASYNC, "X-API-Key": KEY})
    assert response.status_code == 400, response.text
    assert "tanks" in response.text and "ships" in response.text  # names the valid map types
