"""Scale-out (issue 18): two geofed replicas behind nginx act as one server.

Two `geofed serve` processes on loopback share the machine's PostgreSQL (a fresh database) and Redis (a key prefix
of their own, deleted afterwards); nginx runs unprivileged on `deploy/nginx.conf` (rewritten for loopback by
`tests.test_deploy_files.local_nginx_conf`), round robin, and names the replica that answered in a header. The
truth comes from the simulators: their request logs, the Sentinel Hub token counter, the AppEEARS task list.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from cryptography.fernet import Fernet
from pystac_client import Client

from simulators.server import free_port
from tests.conftest import ROOT, GeofedServer, Sims, launch_geofed, require_service
from tests.test_deploy_files import REPLICA_SETTINGS, local_nginx_conf, nginx_binary
from tests.test_jobs import PG_ADMIN, PROCESS, AppeearsTruth, inputs, wait_until
from tests.test_stac_bridge import SH_COLLECTIONS, WINDOW, default_order, sentinelhub_truth, spaceknow_truth

REDIS_URL = "redis://127.0.0.1:6379/0"
REPLICA = "X-Geofed-Replica"  # set by the test's nginx: the replica that answered
SH_SEARCH = "/api/v1/catalog/1.0.0/search"

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")


@dataclass
class Cluster:
    url: str  # nginx
    replicas: list[GeofedServer]
    prefix: str  # of this run's Redis keys
    token_key: str
    startup_tokens: int  # Sentinel Hub tokens issued while both replicas made their first Sentinel Hub call

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=60, **kwargs)

    def replica(self, response: httpx.Response) -> GeofedServer:
        """The replica that answered (nginx names its address)."""
        address = response.headers[REPLICA]
        return next(r for r in self.replicas if r.url == f"http://{address}")


def sh_tokens_issued(sims: Sims) -> int:
    return int(sims.info("sentinelhub")["tokens_issued"])


def sh_search(server: GeofedServer) -> httpx.Response:
    """A read that always reaches Sentinel Hub with a token (a POST search: never answered from a cache)."""
    return server.post("/stac/search", json={"collections": [SH_COLLECTIONS[0]], "limit": 1,
                                             "datetime": "/".join(WINDOW)})


@pytest.fixture(scope="module")
def cluster(sims: Sims, geofed_env_vars: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[Cluster]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_service("127.0.0.1", 6379, "Redis")
    nginx = nginx_binary()
    tmp = tmp_path_factory.mktemp("scale-out")
    database = f"geofed_scale_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    prefix, token_key = f"geofed-test-{uuid.uuid4().hex[:12]}:", Fernet.generate_key().decode()
    ports, nginx_port = [free_port(), free_port()], free_port()
    url = f"http://127.0.0.1:{nginx_port}"
    settings = {  # what every replica needs (the same list deploy/compose.yaml is checked against)
        "GEOFED_HOST": "127.0.0.1",
        "GEOFED_PUBLIC_URL": url,  # links name nginx: next pages go through it, to either replica
        "GEOFED_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "GEOFED_REDIS_URL": REDIS_URL,
        "GEOFED_PAGINATION_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "GEOFED_TOKEN_KEY": token_key,
    }
    assert set(REPLICA_SETTINGS) == {*settings, "GEOFED_PORT"}  # GEOFED_PORT: set per replica by launch_geofed
    env = {**geofed_env_vars, **settings, "GEOFED_REDIS_PREFIX": prefix}
    replicas: list[GeofedServer] = []
    proxy: subprocess.Popen[bytes] | None = None
    try:
        before = sh_tokens_issued(sims)
        with ThreadPoolExecutor(max_workers=2) as pool:
            replicas += pool.map(lambda i: launch_geofed(env, tmp / f"replica-{i}", port=ports[i]), range(2))
        for replica in replicas:  # each replica's first Sentinel Hub call, one after the other
            assert sh_search(replica).status_code == 200
        startup_tokens = sh_tokens_issued(sims) - before

        prefix_dir = tmp / "nginx"
        prefix_dir.mkdir()
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix_dir / kind).mkdir()
        conf = local_nginx_conf(prefix_dir, nginx_port, ports)
        proxy = subprocess.Popen([nginx, "-p", str(prefix_dir), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        wait_until("nginx to listen", lambda: _answers(f"{url}/healthz") or proxy.poll() is not None, timeout=20)
        assert proxy.poll() is None, (prefix_dir / "error.log").read_text()
        yield Cluster(url, replicas, prefix, token_key, startup_tokens)
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
        for replica in replicas:
            replica.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        store = redis.Redis.from_url(REDIS_URL)
        keys = list(store.scan_iter(match=f"{prefix}*"))
        if keys:
            store.delete(*keys)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def shared_keys(cluster: Cluster, kind: str) -> list[bytes]:
    return list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{cluster.prefix}{kind}:*"))


# ------------------------------------------------------------------------------------------------ startup
def test_shared_storage_without_a_pagination_secret_refuses_to_start(tmp_path: Path) -> None:
    for setting in ("GEOFED_DATABASE_URL", "GEOFED_REDIS_URL"):
        env = {"PATH": "/usr/bin:/bin", "GEOFED_DEMO": "0", "GEOFED_DATA_DIR": str(tmp_path),
               "GEOFED_PORT": str(free_port()), setting: "postgresql://nobody@127.0.0.1:1/none"
               if setting == "GEOFED_DATABASE_URL" else "redis://127.0.0.1:1/0"}
        done = subprocess.run([sys.executable, "-m", "geofed.cli", "serve"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("geofed: refusing to start:") and setting in lines[0]
        assert "GEOFED_PAGINATION_SECRET" in lines[0]


# ------------------------------------------------------------------------------------------------ tokens
def test_sentinel_hub_issues_one_token_for_both_replicas(cluster: Cluster, sims: Sims) -> None:
    assert cluster.startup_tokens == 1
    # at rest the shared token is encrypted with GEOFED_TOKEN_KEY
    (key,) = [k for k in shared_keys(cluster, "token") if k.startswith(f"{cluster.prefix}token:sentinelhub:".encode())]
    stored = redis.Redis.from_url(REDIS_URL).get(key)
    assert stored is not None
    token = Fernet(cluster.token_key.encode()).decrypt(stored)
    assert b"sh_" in token and token.split(b'"value":"')[1].split(b'"')[0] not in stored

    # once the token expires, both replicas need a new one at the same time: still one token between them
    before = sh_tokens_issued(sims)
    assert sims.expire_tokens("sentinelhub") >= 1
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(sh_search, cluster.replicas))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sh_tokens_issued(sims) - before == 1
    assert len(sims.log("sentinelhub", "openid-connect/token", method="POST")) == 1


# ------------------------------------------------------------------------------------------------ paging
def test_pages_alternate_between_replicas_and_the_result_is_exact(cluster: Cluster, sims: Sims) -> None:
    truth = {(c, i): d for c in SH_COLLECTIONS for i, d in sentinelhub_truth(sims, c).items()}
    truth.update({("spaceknow-scenes", i): d for i, d in spaceknow_truth(sims).items()})
    sims.clear("sentinelhub")
    client = Client.open(f"{cluster.url}/stac/", timeout=120)
    served: list[str] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        if "/stac/search" in response.url:
            served.append(response.headers[REPLICA])

    client._stac_io.session.hooks["response"].append(record)  # the session pystac-client pages with
    search = client.search(collections=[*SH_COLLECTIONS, "spaceknow-scenes"], datetime="/".join(WINDOW), limit=9,
                           sortby="-datetime")
    items: list[dict[str, Any]] = []
    sh_reads_after_first_page = None
    for page in search.pages_as_dicts():
        items += page["features"]
        if sh_reads_after_first_page is None:
            sh_reads_after_first_page = len(sims.log("sentinelhub", SH_SEARCH, method="POST"))

    got = [(i["collection"], i["id"]) for i in items]
    assert len(served) >= 4, "the search must span several pages"
    assert all(a != b for a, b in itertools.pairwise(served)), f"pages did not alternate: {served}"
    assert len(got) == len(set(got)), "an item came twice"
    assert set(got) == set(truth)
    assert got == default_order(got, truth)
    # Sentinel Hub cannot sort: the first page read its matches once; the memo shared through Redis served the
    # following pages on both replicas without reading Sentinel Hub again
    assert sh_reads_after_first_page and len(sims.log("sentinelhub", SH_SEARCH, method="POST")) == \
        sh_reads_after_first_page
    assert shared_keys(cluster, "memo")


# ------------------------------------------------------------------------------------------------ coalescing
def test_twenty_identical_requests_through_nginx_make_one_upstream_call(cluster: Cluster, sims: Sims) -> None:
    collection = SH_COLLECTIONS[1]
    item_id = sorted(sentinelhub_truth(sims, collection))[-1]
    sims.clear("sentinelhub")
    sims.faults("sentinelhub", latency_ms=600, path=f"/items/{item_id}")  # the reads overlap on both replicas
    path = f"/stac/collections/{collection}/items/{item_id}"
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: cluster.get(path), range(20)))
    sims.http.delete(f"{sims.url('sentinelhub')}/_sim/faults").raise_for_status()
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    assert {a.json()["id"] for a in answers} == {item_id}
    assert {cluster.replica(a).url for a in answers} == {r.url for r in cluster.replicas}
    upstream = sims.log("sentinelhub", f"/items/{item_id}", method="GET")
    assert len(upstream) == 1, upstream


# ------------------------------------------------------------------------------------------------ jobs (last:
# it kills a replica)
def test_a_job_keeps_running_when_the_replica_that_took_it_is_killed(cluster: Cluster, sims: Sims) -> None:
    sims.post("appeears", "/_sim/config", json={"task_seconds": 6}).raise_for_status()
    try:
        truth = AppeearsTruth(sims)
        submitted = httpx.post(f"{cluster.url}/processes/{PROCESS}/execution", json={"inputs": inputs("scale")},
                               headers={"Prefer": "respond-async"}, timeout=60)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["jobID"]
        taker = cluster.replica(submitted)
        task = wait_until("the upstream task", lambda: truth.task_for(job_id))
        assert task["status"] in ("pending", "processing")

        taker.stop(signal.SIGKILL)
        done = wait_until("the surviving replica to finish the job", lambda: (
            s := cluster.get(f"/jobs/{job_id}").json())["status"] in ("successful", "failed") and s, timeout=150)
        assert done["status"] == "successful", done
        results = cluster.get(f"/jobs/{job_id}/results")
        assert results.status_code == 200, results.text
        assert sorted(f["file_id"] for f in results.json()["files"]) == \
            sorted(f["file_id"] for f in truth.bundle(task["task_id"])["files"])
        assert {cluster.replica(results).url} == {r.url for r in cluster.replicas if r is not taker}
    finally:
        sims.http.delete(f"{sims.url('appeears')}/_sim/config").raise_for_status()
