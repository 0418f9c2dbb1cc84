"""Every process runs its own published example, as it is, in every mode it advertises (issue 19 §4).

A new user copies the `example` of `/processes/{id}` (pygeoapi serves PROCESS_METADATA["example"] there and in
the OpenAPI document) and expects it to work on the demo. So for each process `/processes` lists: the description
must carry an example (a process without one fails here, by name), and executing it must answer 200 with the
outputs when sent synchronously and give a job that reaches `successful` (with readable results) when sent with
`Prefer: respond-async` — in each mode its `jobControlOptions` advertise. Never a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from geofed import registry
from geofed.pygeoapi_config import process_id
from tests.conftest import GeofedServer, Sims

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines", "quick_appeears_tasks")

# Sent with every execution: credit-spending processes need a key where GEOFED_API_KEYS is set; a server without
# keys (the session server, like the demo) ignores it.
KEY = {"X-API-Key": "change-me"}
JOB_TIMEOUT = 120.0  # seconds an async example may take on the simulators (quick pipelines and tasks)

PROCESSES = sorted(process_id(p) for upstream in registry.upstreams().values() for p in upstream.processes)


@pytest.fixture(scope="module")
def quick_appeears_tasks(sims: Sims) -> Iterator[None]:
    """AppEEARS tasks that finish in about two seconds instead of the simulator's default."""
    sims.post("appeears", "/_sim/config", json={"task_seconds": 1.5, "pending_seconds": 0.3}).raise_for_status()
    yield
    sims.http.delete(f"{sims.url('appeears')}/_sim/config").raise_for_status()


def examples_of(description: dict[str, Any]) -> list[dict[str, Any]]:
    """The execute requests a description publishes: pygeoapi's `example` (one request, or a list of them)."""
    example = description.get("example")
    found = example if isinstance(example, list) else [example] if example else []
    return [e for e in found if isinstance(e, dict) and "inputs" in e]


def run_sync(geofed: GeofedServer, pid: str, example: dict[str, Any]) -> None:
    r = geofed.post(f"/processes/{pid}/execution", json=example, headers=KEY, timeout=180)
    assert r.status_code == 200, (pid, "sync", r.status_code, r.text[:800])
    assert r.content, (pid, "sync: empty answer")
    if "json" in r.headers.get("content-type", ""):
        body = r.json()
        assert body not in ({}, [], None), (pid, "sync: no outputs", body)
        assert not (isinstance(body, dict) and "code" in body and "description" in body), (pid, body)


def run_async(geofed: GeofedServer, pid: str, example: dict[str, Any]) -> None:
    r = geofed.post(f"/processes/{pid}/execution", json=example, headers={**KEY, "Prefer": "respond-async"},
                    timeout=180)
    assert r.status_code == 201, (pid, "async", r.status_code, r.text[:800])
    job = r.headers["Location"].rsplit("/", 1)[-1]
    deadline = time.monotonic() + JOB_TIMEOUT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        polled = geofed.get(f"/jobs/{job}", params={"f": "json"}, headers=KEY)
        assert polled.status_code == 200, (pid, polled.status_code, polled.text[:300])
        status = polled.json()
        if status["status"] not in ("accepted", "running"):
            break
        time.sleep(0.3)
    assert status.get("status") == "successful", (pid, "async job did not succeed in time", status)
    results = geofed.get(f"/jobs/{job}/results", params={"f": "json"}, headers=KEY)
    assert results.status_code == 200, (pid, "results", results.status_code, results.text[:500])
    assert results.content, (pid, "async: empty results")


def test_every_registered_process_is_advertised(geofed: GeofedServer) -> None:
    listed = geofed.get("/processes", params={"f": "json", "limit": 1000}).json()["processes"]
    assert sorted(p["id"] for p in listed) == PROCESSES


@pytest.mark.parametrize("pid", PROCESSES)
def test_published_example_runs_in_every_advertised_mode(geofed: GeofedServer, pid: str) -> None:
    described = geofed.get(f"/processes/{pid}", params={"f": "json"})
    assert described.status_code == 200, described.text[:300]
    description = described.json()
    examples = examples_of(description)
    assert examples, f"process {pid} publishes no example (PROCESS_METADATA['example'] with 'inputs')"
    modes = description.get("jobControlOptions") or ["sync-execute"]
    assert {"sync-execute", "async-execute"} & set(modes), (pid, modes)
    for example in examples:
        if "sync-execute" in modes:
            run_sync(geofed, pid, example)
        if "async-execute" in modes:
            run_async(geofed, pid, example)
