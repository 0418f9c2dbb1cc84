"""Durable, upstream-backed jobs (issue 9), driven through real `geofed serve` processes and real clients.

The async process is AppEEARS `appeears-extract`; the truth about upstream tasks comes from the AppEEARS
simulator itself (its task list and bundles), read with the simulator's demo credentials. Task duration is set
through the simulator's `/_sim/config`, faults through `/_sim/faults`. Waits are "until", never timed assertions.
"""

from __future__ import annotations

import hashlib
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg
import pytest
import yaml
from owslib.ogcapi.processes import Processes
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from simulators.server import free_port
from tests.conftest import GeofedServer, Sims, launch_geofed, require_service

PROCESS = "appeears-extract"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def inputs(tag: str = "US-Ha1") -> dict[str, Any]:
    return {
        "task_type": "point",
        "start_date": "2020-01-01",
        "end_date": "2020-01-31",
        "layers": [{"product": "MOD11A1.061", "layer": "LST_Day_1km"}],
        "points": [{"latitude": 42.5378, "longitude": -72.1715, "id": tag}],
    }


def submit(server: GeofedServer, key: str | None = None, tag: str = "US-Ha1") -> str:
    """Executes asynchronously through OWSLib; returns the job id (checking the 201 + Location contract)."""
    headers = {"X-API-Key": key} if key else {}
    answer = Processes(server.url, headers=headers).execute(PROCESS, inputs(tag), async_=True)
    assert answer["status"] == "accepted", answer
    return str(answer["jobID"])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 90, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(every)


def status(server: GeofedServer, job_id: str, key: str | None = None) -> dict[str, Any]:
    r = server.get(f"/jobs/{job_id}", headers={"X-API-Key": key} if key else {})
    assert r.status_code == 200, r.text
    return r.json()


class AppeearsTruth:
    """What the AppEEARS simulator knows (the tests' truth), read as an AppEEARS user would."""

    def __init__(self, sims: Sims) -> None:
        self.sims = sims
        token = sims.post("appeears", "/login", auth=("demo", "demo-password")).json()["token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def task_for(self, job_id: str) -> dict[str, Any] | None:
        tasks = self.sims.get("appeears", "/task", headers=self.auth).json()
        found = [t for t in tasks if t["task_name"] == f"geofed-{job_id}"]
        assert len(found) <= 1, found
        return found[0] if found else None

    def task_exists(self, task_id: str) -> bool:
        return self.sims.get("appeears", f"/task/{task_id}", headers=self.auth).status_code == 200

    def bundle(self, task_id: str) -> dict[str, Any]:
        r = self.sims.get("appeears", f"/bundle/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def truth(sims: Sims) -> AppeearsTruth:
    return AppeearsTruth(sims)


@pytest.fixture
def slow_tasks(sims: Sims) -> Iterator[Callable[[float], None]]:
    """Sets how long AppEEARS tasks take; restores the simulator's defaults afterwards."""

    def set_seconds(seconds: float) -> None:
        sims.post("appeears", "/_sim/config", json={"task_seconds": seconds}).raise_for_status()

    yield set_seconds
    sims.http.delete(f"{sims.url('appeears')}/_sim/config").raise_for_status()


@pytest.fixture
def servers() -> Iterator[list[GeofedServer]]:
    """Servers a test launches itself (restarts, replicas); all stopped afterwards."""
    started: list[GeofedServer] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


def check_results(server: GeofedServer, job_id: str, truth: AppeearsTruth, task_id: str) -> None:
    """The results list the upstream bundle's files, and a file streamed through geofed is the upstream's."""
    r = server.get(f"/jobs/{job_id}/results")
    assert r.status_code == 200, r.text
    files = r.json()["files"]
    bundle = truth.bundle(task_id)
    assert sorted(f["file_id"] for f in files) == sorted(f["file_id"] for f in bundle["files"])
    assert all(f["href"].startswith(f"{server.url}/jobs/{job_id}/results/files/") for f in files)
    entry = bundle["files"][0]
    got = httpx.get(f"{server.url}/jobs/{job_id}/results/files/{entry['file_id']}", timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == entry["sha256"]


# ---------------------------------------------------------------------------------------------- restart
def test_job_survives_sigkill_and_finishes_after_restart(
    sims: Sims, geofed_env_vars: dict[str, str], tmp_path: Path, servers: list[GeofedServer],
    truth: AppeearsTruth, slow_tasks: Callable[[float], None],
) -> None:
    slow_tasks(12)
    port, data_dir = free_port(), tmp_path / "data"
    server = launch_geofed(geofed_env_vars, data_dir, port=port)
    servers.append(server)
    job_id = submit(server)
    # the job is running upstream and geofed knows it
    wait_until("the job to run", lambda: status(server, job_id)["status"] == "running")
    before = status(server, job_id)
    task = truth.task_for(job_id)
    assert task is not None and task["status"] in ("pending", "processing")

    server.stop(signal.SIGKILL)
    restarted = time.time()
    server = launch_geofed(geofed_env_vars, data_dir, port=port)
    servers.append(server)

    listed = server.get("/jobs").json()["jobs"]  # a listing reads the store, it does not poll the upstream
    assert job_id in [j["jobID"] for j in listed]
    # nobody asks about the job: the restarted server's poller alone must see the task finish and collect
    # the bundle
    wait_until("the restarted poller to fetch the bundle", lambda: [
        e for e in sims.log("appeears", f"/bundle/{task['task_id']}", method="GET") if e["ts"] >= restarted])
    done = status(server, job_id)
    assert done["status"] == "successful", done
    assert done["progress"] == 100
    assert done["created"] == before["created"] and done["started"] == before["started"]
    assert done["finished"] is not None and done["finished"] >= done["started"]
    assert any(link["rel"].endswith("/results") for link in done["links"])
    check_results(server, job_id, truth, task["task_id"])


# ---------------------------------------------------------------------------------------------- replicas
@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    name = f"geofed_jobs_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_two_replicas_share_jobs_through_postgresql(
    sims: Sims, geofed_env_vars: dict[str, str], tmp_path: Path, servers: list[GeofedServer],
    truth: AppeearsTruth, slow_tasks: Callable[[float], None], pg_url: str,
) -> None:
    slow_tasks(30)
    env = {**geofed_env_vars, "GEOFED_DATABASE_URL": pg_url, "GEOFED_PAGINATION_SECRET": "test-replicas-secret"}
    # both start at once: creating the schema must be safe when replicas race for it
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(lambda name: launch_geofed(env, tmp_path / name), ("a", "b"))
    servers.extend((a, b))

    job_id = submit(a)
    # read through B at once: the record was written before A answered 201
    assert status(b, job_id)["status"] in ("accepted", "running")
    assert job_id in [j["jobID"] for j in b.get("/jobs").json()["jobs"]]
    a.stop()  # from now on only B can advance the job

    task = wait_until("the upstream task", lambda: truth.task_for(job_id))
    wait_until("B to see the job running with upstream progress",
               lambda: (s := status(b, job_id))["status"] == "running" and s["progress"] > 0)
    dismissed = b.delete(f"/jobs/{job_id}")
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["status"] == "dismissed"
    assert sims.log("appeears", f"/task/{task['task_id']}", method="DELETE")
    assert not truth.task_exists(task["task_id"])  # cancelled upstream, not just forgotten
    assert status(b, job_id)["status"] == "dismissed"
    assert b.get(f"/jobs/{job_id}/results").status_code == 404
    # the password-free URL is not a secret, but the rendered config must never carry the database URL
    config = yaml.safe_load((tmp_path / "b" / "pygeoapi-config.yml").read_text())
    assert "postgresql://" not in str(config)


# ---------------------------------------------------------------------------------------------- concurrency
def test_ten_concurrent_submissions_and_dismissal_is_final(
    sims: Sims, geofed: GeofedServer, truth: AppeearsTruth, slow_tasks: Callable[[float], None],
) -> None:
    slow_tasks(4)
    server = geofed
    with ThreadPoolExecutor(max_workers=10) as pool:
        job_ids = list(pool.map(lambda i: submit(server, tag=f"p{i}"), range(10)))
    assert len(set(job_ids)) == 10

    # paging through the filtered list (4 a page) finds each job once, these ten among them
    seen: list[str] = []
    url: str | None = f"{server.url}/jobs?processID={PROCESS}&limit=4"
    while url:
        page = httpx.get(url, timeout=30).json()
        assert len(page["jobs"]) <= 4 and all(j["processID"] == PROCESS for j in page["jobs"])
        seen += [j["jobID"] for j in page["jobs"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert len(seen) == len(set(seen)) == page["numberMatched"]
    assert set(job_ids) <= set(seen)

    tasks = {job_id: truth.task_for(job_id) for job_id in job_ids}
    assert all(tasks.values()) and len({t["task_id"] for t in tasks.values()}) == 10
    wait_until("all ten jobs to succeed", lambda: all(
        status(server, j)["status"] == "successful" for j in job_ids), timeout=120)
    done = server.get("/jobs", params={"status": "successful", "processID": PROCESS, "limit": 1000}).json()
    assert set(job_ids) <= {j["jobID"] for j in done["jobs"]}
    assert all(j["status"] == "successful" for j in done["jobs"])
    check_results(server, job_ids[0], truth, tasks[job_ids[0]]["task_id"])

    # a running job dismissed while a slow status poll is in flight never turns successful afterwards
    slow_tasks(6)
    victim = submit(server)
    task = wait_until("the upstream task", lambda: truth.task_for(victim))
    wait_until("the job to run", lambda: status(server, victim)["status"] == "running")
    sims.faults("appeears", latency_ms=2000, path="/status/")
    marked = time.time()
    in_flight = wait_until("a slow status poll in flight", lambda: [
        e for e in sims.log("appeears", f"/status/{task['task_id']}") if e["ts"] >= marked])
    assert status(server, victim)["status"] == "running"  # the poll in flight holds the lease: no refresh
    answer = server.delete(f"/jobs/{victim}")
    assert answer.status_code == 200 and answer.json()["status"] == "dismissed"
    assert not truth.task_exists(task["task_id"])
    # let the in-flight poll come back and the task's upstream schedule pass before looking again
    settle = in_flight[0]["ts"] + 2.0 + 6.0 + 1.0
    wait_until("the in-flight poll and the upstream schedule to pass", lambda: time.time() > settle, timeout=30)
    sims.clear("appeears")
    for _ in range(3):
        assert status(server, victim)["status"] == "dismissed"
    assert server.get(f"/jobs/{victim}/results").status_code == 404
    assert server.delete(f"/jobs/{victim}").status_code == 200  # idempotent


def test_list_parameters_are_validated(geofed: GeofedServer) -> None:
    for params, name in (({"status": "finished"}, "status"), ({"limit": "many"}, "limit"),
                         ({"limit": "0"}, "limit"), ({"offset": "-1"}, "offset")):
        r = geofed.get("/jobs", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["parameter"] == name
    assert geofed.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert geofed.delete(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_invalid_inputs_are_refused_before_a_job_exists(geofed: GeofedServer, sims: Sims) -> None:
    before = geofed.get("/jobs", params={"limit": 1000}).json()["numberMatched"]
    r = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": {"task_type": "volume"}},
                    headers={"Prefer": "respond-async"})
    assert r.status_code == 400, r.text
    assert not sims.log("appeears", "/task", method="POST")
    assert geofed.get("/jobs", params={"limit": 1000}).json()["numberMatched"] == before


def test_upstream_failure_on_submit_is_a_5xx_naming_the_upstream(geofed: GeofedServer, sims: Sims) -> None:
    sims.faults("appeears", status=503, path="/task")
    r = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": inputs()},
                    headers={"Prefer": "respond-async"})
    assert r.status_code in (502, 503, 504), r.text
    assert "AppEEARS" in r.text


def test_a_job_that_fails_upstream_reports_it(geofed: GeofedServer, truth: AppeearsTruth) -> None:
    body = {**inputs(), "start_date": "1990-01-01", "end_date": "1990-01-31"}  # before MOD11A1's extent
    answer = Processes(geofed.url).execute(PROCESS, body, async_=True)
    job_id = answer["jobID"]
    final = wait_until("the job to end", lambda: (s := status(geofed, job_id))["status"] not in (
        "accepted", "running") and s)
    task = truth.task_for(job_id)
    assert task is not None and task["status"] == "error"  # the truth: AppEEARS failed the task
    assert final["status"] == "failed" and "AppEEARS" in final["message"]
    assert final["finished"] is not None
    results = geofed.get(f"/jobs/{job_id}/results")
    assert results.status_code == 502, results.text
    assert "AppEEARS" in results.json()["detail"]


# ---------------------------------------------------------------------------------------------- sync processes
EPOCH = "epoch-aggregate-emissions"
EPOCH_INPUTS = {"collection": "cocoa-civ-2024", "monitoring_start": "2020-01-01", "monitoring_end": "2024-01-10",
                "filters": {"facility_id": "coop-soubre-01"}}


def test_sync_processes_run_through_the_manager_keeping_error_statuses(geofed: GeofedServer, sims: Sims) -> None:
    def failed_ids() -> set[str]:
        jobs = geofed.get("/jobs", params={"processID": EPOCH, "status": "failed", "limit": 1000}).json()["jobs"]
        return {j["jobID"] for j in jobs}

    ok = geofed.post(f"/processes/{EPOCH}/execution", json={"inputs": EPOCH_INPUTS})
    assert ok.status_code == 200, ok.text
    failed_before = failed_ids()  # the session's server also holds other tests' failed jobs
    sims.faults("epoch", status=503)
    failed = geofed.post(f"/processes/{EPOCH}/execution", json={"inputs": EPOCH_INPUTS})
    assert failed.status_code == 503, failed.text  # stock pygeoapi would answer 400 here
    assert "Epoch" in failed.text
    # a sync execution is a job too: recorded, with its output stored as its results
    job_url = ok.headers["Location"]
    assert status(geofed, job_url.rsplit("/", 1)[-1])["status"] == "successful"
    assert httpx.get(f"{job_url}/results", timeout=30).json() == ok.json()
    new_failed = failed_ids() - failed_before
    assert len(new_failed) == 1
    job = status(geofed, new_failed.pop())
    assert job["status"] == "failed" and "Epoch" in job["message"]


# ---------------------------------------------------------------------------------------------- access
def test_api_keys_guard_processes_and_scope_jobs(sims: Sims, start_geofed: Callable[..., GeofedServer]) -> None:
    key_a, key_b = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    server = start_geofed(GEOFED_API_KEYS=f"{key_a},{key_b}", GEOFED_API_KEY_PROCESSES=EPOCH)
    async_ = {"Prefer": "respond-async"}
    # AppEEARS and SpaceKnow analyses say so in their classes, Epoch's operator in GEOFED_API_KEY_PROCESSES
    for process, body in ((PROCESS, inputs()), ("spaceknow-analysis", {}), (EPOCH, EPOCH_INPUTS)):
        url = f"/processes/{process}/execution"
        no_key = server.post(url, json={"inputs": body}, headers=async_)
        assert no_key.status_code == 401, (process, no_key.text)
        assert no_key.headers.get("WWW-Authenticate")
        assert process in no_key.json()["detail"]
        wrong = server.post(url, json={"inputs": body}, headers={**async_, "X-API-Key": "not-a-key"})
        assert wrong.status_code == 403, (process, wrong.text)
    for name in ("appeears", "spaceknow", "epoch"):
        assert not [e for e in sims.log(name) if e["method"] == "POST" or "fetch" in e["path"]], name
    # a process that spends nothing needs no key
    free = server.post("/processes/spaceknow-check-area/execution", json={"inputs": {}})
    assert free.status_code not in (401, 403), free.text

    job_id = submit(server, key=key_a)
    assert status(server, job_id, key_a)["jobID"] == job_id
    bearer = server.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {key_a}"})
    assert bearer.status_code == 200
    for other in ({"X-API-Key": key_b}, {}):
        assert server.get(f"/jobs/{job_id}", headers=other).status_code == 404
        assert server.get(f"/jobs/{job_id}/results", headers=other).status_code == 404
        assert job_id not in [j["jobID"] for j in server.get("/jobs", headers=other).json()["jobs"]]
        assert server.delete(f"/jobs/{job_id}", headers=other).status_code == 404
    assert server.get("/jobs", headers={"X-API-Key": "not-a-key"}).status_code == 403
    assert job_id in [j["jobID"] for j in server.get("/jobs", headers={"X-API-Key": key_a}).json()["jobs"]]
    assert status(server, job_id, key_a)["status"] in ("accepted", "running", "successful")
    assert server.delete(f"/jobs/{job_id}", headers={"X-API-Key": key_a}).status_code == 200

    # keys never leave the server: not in its log, not in its rendered config
    leaked = server.log_text() + (server.data_dir / "pygeoapi-config.yml").read_text()
    assert key_a not in leaked and key_b not in leaked


def test_sync_input_refusal_leaves_no_job(geofed: GeofedServer, sims: Sims) -> None:
    before = geofed.get("/jobs", params={"processID": EPOCH, "limit": 1}).json()["numberMatched"]
    bad = {**EPOCH_INPUTS, "monitoring_start": "not-a-date"}
    r = geofed.post(f"/processes/{EPOCH}/execution", json={"inputs": bad})
    assert r.status_code == 400, r.text
    assert not sims.log("epoch")  # refused before anything was sent
    assert geofed.get("/jobs", params={"processID": EPOCH, "limit": 1}).json()["numberMatched"] == before


def test_a_mode_the_process_does_not_offer_is_a_clear_400(geofed: GeofedServer) -> None:
    offered = {p["id"]: p.get("jobControlOptions") or []
               for p in geofed.get("/processes", params={"f": "json", "limit": 1000}).json()["processes"]}
    checked = 0
    for process_id, modes in offered.items():
        for mode, prefer, says in (("async-execute", "respond-async", "synchronously only"),
                                   ("sync-execute", "wait", "asynchronously only")):
            if mode in modes:
                continue
            before = geofed.get("/jobs", params={"limit": 1}).json()["numberMatched"]
            r = geofed.post(f"/processes/{process_id}/execution", json={"inputs": {}}, headers={"Prefer": prefer})
            assert r.status_code == 400, (process_id, prefer, r.text)
            assert r.json()["parameter"] == "Prefer" and says in r.json()["detail"], r.json()
            assert geofed.get("/jobs", params={"limit": 1}).json()["numberMatched"] == before
            checked += 1
    assert checked, "every process offers both modes: nothing to refuse"


# ---------------------------------------------------------------------------------------------- in-process manager
class Gate(BaseProcessor):
    """A process that runs in geofed's own threads (not upstream-backed), both modes; it waits for its gate."""

    gates: ClassVar[dict[str, threading.Event]] = {}

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, {"id": "gate", "title": "gate", "version": "1", "inputs": {},
                                         "outputs": {}, "jobControlOptions": ["sync-execute", "async-execute"]})

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        if data.get("bad"):
            error = ProcessorExecuteError(user_msg="bad input")
            error.http_status_code = 400  # type: ignore[assignment]
            raise error
        if data.get("crash"):
            raise RuntimeError("boom")
        self.gates.setdefault(str(data.get("gate")), threading.Event()).wait(30)
        return "application/json", {"echo": data.get("gate")}


@pytest.fixture
def manager(tmp_path: Path) -> Any:
    from geofed.jobs.manager import GeofedManager

    return GeofedManager({"name": "geofed.jobs.manager.GeofedManager", "connection": str(tmp_path / "jobs.db"),
                          "processes": {"gate": {"processor": {"name": f"{__name__}.Gate"}}}})


def test_local_async_jobs_run_to_an_end_in_process(manager: Any) -> None:
    """The async path of a process that runs in geofed itself (issue 19: it answered 500, stuck `accepted`)."""
    from pygeoapi.util import RequestedProcessExecutionMode

    respond_async = RequestedProcessExecutionMode.respond_async
    job_id, _, _, status, _ = manager.execute_process("gate", {"gate": "a"}, execution_mode=respond_async)
    assert status.value == "accepted"
    wait_until("the job to run", lambda: manager.store.get(job_id).status == "running", timeout=10)
    running = manager.store.get(job_id)
    assert running.kind == "local" and running.lease_until > time.time()  # held by this server, renewed
    Gate.gates.setdefault("a", threading.Event()).set()
    wait_until("the job to succeed", lambda: manager.store.get(job_id).status == "successful", timeout=10)
    assert manager.get_job_result(job_id) == ("application/json", {"echo": "a"})

    failing, _, _, _, _ = manager.execute_process("gate", {"crash": True}, execution_mode=respond_async)
    wait_until("the job to fail", lambda: manager.store.get(failing).status == "failed", timeout=10)
    refused, _, _, _, _ = manager.execute_process("gate", {"bad": True}, execution_mode=respond_async)
    wait_until("the refused job to fail", lambda: manager.store.get(refused).status == "failed", timeout=10)
    assert manager.store.get(refused).error["status"] == 400  # an async client reads why from its job


def test_sync_refusal_leaves_no_job_in_process(manager: Any) -> None:
    with pytest.raises(ProcessorExecuteError):
        manager.execute_process("gate", {"bad": True})
    assert manager.store.list()[1] == 0
    Gate.gates.setdefault("s", threading.Event()).set()
    job_id, _, outputs, status, _ = manager.execute_process("gate", {"gate": "s"})
    assert status.value == "successful" and outputs == {"echo": "s"}
    assert manager.store.get(job_id).status == "successful"


# ---------------------------------------------------------------------------------------------- the store
def test_local_jobs_never_stay_active_after_their_server_is_gone(tmp_path: Path) -> None:
    """In-process, on a SQLite store: a job running in a server's thread (kind "local") holds a lease that server
    renews; once it lapses (the server died) or the server restarts, the job fails instead of staying active."""
    from geofed.jobs.store import LOCAL_LEASE, JobRecord, SqliteStore

    store = SqliteStore(tmp_path / "jobs.sqlite")
    now = time.time()
    store.insert(JobRecord("alive", "p", status="running", kind="local", lease_owner="a:1", lease_until=now + 60))
    store.insert(JobRecord("lapsed", "p", status="running", kind="local", lease_owner="b:1", lease_until=now - 1))
    store.insert(JobRecord("old", "p", status="accepted", kind="local", lease_owner="b:1",
                           updated=now - LOCAL_LEASE - 1))
    store.insert(JobRecord("restarted", "p", status="running", kind="local", lease_owner="c:1",
                           lease_until=now + 60))
    store.insert(JobRecord("polled", "p", status="running", kind="upstream", handle={"task": 1},
                           lease_owner="c:1", lease_until=now + 60))
    assert sorted(store.fail_orphans(now, now - 300)) == ["lapsed", "old"]
    assert store.fail_orphans(now, now - 300, local_owner="c:1") == ["restarted"]
    failed = store.get("lapsed")
    assert failed is not None and failed.status == "failed" and failed.error and failed.error["status"] == 503
    assert "restart" in (failed.message or "")
    assert store.get("alive").status == "running"  # type: ignore[union-attr]
    # a restart releases the leases on upstream jobs (polled again at once), never resurrects local ones
    assert store.release_owner("c:1") == 1
    polled = store.get("polled")
    assert polled is not None and polled.lease_owner is None and polled.status == "running"
