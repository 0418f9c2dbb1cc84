"""The fault matrix (issue 15): 5 upstreams × 8 faults, each cell one test through a running geofed server.

Every cell injects one fault through the simulators (`/_sim/faults`, `/_sim/tokens/expire`), makes the request a
user would make for that upstream (the *probe*), and checks:

- the outcome written in `EXPECTED`, which must equal the README's "Failure behaviour" table (asserted below, so
  the two cannot drift): a retry that succeeds (`200 after retry`), a complete answer (`200`), or a clear
  502/503/504 whose JSON error document names the upstream — never a 500, a traceback or a hang; a job is never
  lost (`job successful`, or `job failed` with a message naming the upstream);
- that a federated STAC search over that member and a healthy one still answers (`partial`: 200 with the healthy
  member's items and the faulty member reported in `federation:members`; `full`: the member recovered);
- that no configured credential and no token any simulator issued shows up in a response body or header, or in the
  server log;
- that the upstream answers normally again once the fault is cleared.

One server of its own (short timeout, two attempts, no read cache, a breaker that does not open) so that a cell
takes a few seconds and leaves nothing behind for other tests.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators import DEMO_CREDENTIALS
from tests.conftest import ROOT, GeofedServer, Sims, launch_geofed

TIMEOUT = 1.5  # GEOFED_HTTP_TIMEOUT of the matrix server
UPSTREAMS = ("carbonmapper", "spaceknow", "epoch", "appeears", "sentinelhub")
FAULTS = ("timeout", "http-500", "http-503", "http-429", "malformed-json", "cut-short", "token-expired", "slow-drip")
TITLES = {"carbonmapper": "CarbonMapper", "spaceknow": "SpaceKnow", "epoch": "Epoch", "appeears": "AppEEARS",
          "sentinelhub": "Sentinel Hub"}
# Retry-After in each upstream's unit (observed.md: CarbonMapper seconds, Sentinel Hub milliseconds; the others
# document none, so the HTTP standard's seconds).
RETRY_AFTER = {"carbonmapper": (1, "s"), "spaceknow": (1, "s"), "epoch": (1, "s"), "appeears": (1, "s"),
               "sentinelhub": (800, "ms")}

# ---------------------------------------------------------------- the expectations (= the README table)
# (probe outcome, federated search) per cell; the README's table must say exactly this.
RETRIED = "200 after retry"
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "carbonmapper": {"timeout": ("504", "partial"), "http-500": ("502", "partial"), "http-503": (RETRIED, "full"),
                     "http-429": (RETRIED, "full"), "malformed-json": ("502", "partial"),
                     "cut-short": ("502", "partial"), "token-expired": (RETRIED, "full"), "slow-drip": ("200", "full")},
    "spaceknow": {"timeout": ("504", "partial"), "http-500": ("502", "partial"), "http-503": (RETRIED, "full"),
                  "http-429": (RETRIED, "full"), "malformed-json": ("502", "partial"), "cut-short": ("502", "partial"),
                  "token-expired": (RETRIED, "full"), "slow-drip": ("200", "full")},
    "epoch": {"timeout": ("504", "partial"), "http-500": ("502", "partial"), "http-503": (RETRIED, "full"),
              "http-429": (RETRIED, "full"), "malformed-json": ("502", "partial"), "cut-short": ("502", "partial"),
              "token-expired": ("502", "partial"), "slow-drip": ("200", "full")},
    "appeears": {"timeout": ("job successful", "-"), "http-500": ("job successful", "-"),
                 "http-503": ("job successful", "-"), "http-429": ("job successful", "-"),
                 "malformed-json": ("job successful", "-"), "cut-short": ("job successful", "-"),
                 "token-expired": ("job successful", "-"), "slow-drip": ("job successful", "-")},
    "sentinelhub": {"timeout": ("504", "partial"), "http-500": ("502", "partial"), "http-503": (RETRIED, "full"),
                    "http-429": (RETRIED, "full"), "malformed-json": ("502", "partial"),
                    "cut-short": ("502", "partial"), "token-expired": (RETRIED, "full"), "slow-drip": ("200", "full")},
}


def fault_settings(upstream: str, fault: str, path: str) -> dict[str, Any] | None:
    """The `/_sim/faults` body of a cell (None: the cell expires tokens instead)."""
    if fault == "token-expired":
        # Epoch's API token is static (nothing to renew): "expired" is the upstream refusing it once.
        return {"status": 401, "count": 1, "path": path} if upstream == "epoch" else None
    value, unit = RETRY_AFTER[upstream]
    return {"path": path, **{
        "timeout": {"latency_ms": (TIMEOUT + 2.5) * 1000},
        "http-500": {"status": 500},
        "http-503": {"status": 503, "count": 1},
        "http-429": {"status": 429, "count": 1, "retry_after": value, "retry_after_unit": unit},
        "malformed-json": {"malformed": True},
        "cut-short": {"truncate_bytes": 120},
        "slow-drip": {"drip_ms": 40},  # every body still complete within TIMEOUT (a longer one: the test below)
    }[fault]}


# ---------------------------------------------------------------- probes: what a user asks of each upstream
@dataclass(frozen=True)
class Probe:
    fault_path: str  # the upstream path (substring) the fault applies to: data calls, not token calls
    federated: str | None  # a STAC collection of the member, searched together with a healthy member's


PROBES = {
    "carbonmapper": Probe("/api/v1/catalog/plumes", "carbonmapper-plumes"),
    "spaceknow": Probe("/imagery/search", "spaceknow-scenes"),
    "epoch": Probe("/fetch_biomass_emissions", "epoch-plots"),
    "appeears": Probe("/status/", None),
    "sentinelhub": Probe("/api/v1/catalog/1.0.0/search", "sentinelhub:sentinel-2-l2a"),
}
HEALTHY = {"carbonmapper": "epoch-plots"}  # the other member of a federated search (default carbonmapper-plumes)
SPACEKNOW_BBOX = "-104.3,31.0,-102.1,32.9"
APPEEARS_INPUTS = {"task_type": "point", "start_date": "2019-01-01", "end_date": "2019-01-31",
                   "layers": [{"product": "VNP21A1D.002", "layer": "LST_1KM"}],
                   "points": [{"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1"}]}


class Recorder:
    """geofed calls of one cell; every response is kept for the secrets scan."""

    def __init__(self, server: GeofedServer) -> None:
        self.server = server
        self.responses: list[httpx.Response] = []

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._keep(self.server.get(path, timeout=45, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._keep(self.server.post(path, timeout=45, **kwargs))

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.responses.append(response)
        return response


def fresh_interval() -> str:
    """A datetime interval no earlier query used (open start, a unique end second in 2099): geofed answers no
    probe from its caches of finished upstream work (SpaceKnow searches, Epoch streams and counts)."""
    n = uuid.uuid4().int % 86_400
    return f"../2099-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"


def probe_request(upstream: str, call: Recorder) -> httpx.Response:
    fresh = {"datetime": fresh_interval()}
    if upstream == "carbonmapper":
        return call.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 5, **fresh})
    if upstream == "spaceknow":
        return call.get("/collections/spaceknow-scenes/items",
                        params={"f": "json", "limit": 5, "bbox": SPACEKNOW_BBOX, **fresh})
    if upstream == "epoch":
        return call.get("/collections/epoch-plots/items", params={"f": "json", "limit": 5, **fresh})
    if upstream == "sentinelhub":
        return call.get("/stac/search", params={"collections": "sentinelhub:sentinel-2-l2a", "limit": 3,
                                                "bbox": "13.6,45.55,13.85,45.75", **fresh})
    raise AssertionError(upstream)


def federated_search(upstream: str, call: Recorder) -> httpx.Response:
    collections = f"{PROBES[upstream].federated},{HEALTHY.get(upstream, 'carbonmapper-plumes')}"
    params = {"collections": collections, "limit": 10, "datetime": fresh_interval()}
    if upstream == "spaceknow":
        params["bbox"] = SPACEKNOW_BBOX  # SpaceKnow needs an area; the healthy member's items are anywhere
    return call.get("/stac/search", params=params)


# ---------------------------------------------------------------- the server and the scans
@pytest.fixture(scope="module")
def matrix_server(sims: Sims, geofed_env_vars: dict[str, str]) -> Iterator[GeofedServer]:
    settings = {"GEOFED_HTTP_TIMEOUT": str(TIMEOUT), "GEOFED_HTTP_RETRIES": "2", "GEOFED_CACHE_TTL": "0",
                "GEOFED_BREAKER_FAILURES": "100000", "GEOFED_LOG_LEVEL": "INFO", "GEOFED_FEDERATION_TIMEOUT": "15"}
    with tempfile.TemporaryDirectory(prefix="geofed-faults-") as tmp:
        server = launch_geofed({**geofed_env_vars, **settings}, Path(tmp))
        yield server
        server.stop()


@pytest.fixture(scope="module")
def quick_upstream_jobs(sims: Sims) -> Iterator[None]:
    """AppEEARS tasks that finish in a second, SpaceKnow pipelines that resolve at once."""
    before = sims.get("spaceknow", "/_sim/config").json()
    sims.post("spaceknow", "/_sim/config", json={"next_try": 0, "polls": 2}).raise_for_status()
    sims.post("appeears", "/_sim/config", json={"task_seconds": 1.0, "pending_seconds": 0.2}).raise_for_status()
    yield
    sims.post("spaceknow", "/_sim/config", json=before).raise_for_status()
    sims.http.delete(f"{sims.url('appeears')}/_sim/config").raise_for_status()


# Credentials of 8 characters or more (AppEEARS' demo user name "demo" is a word any page may contain).
SECRETS = sorted({v for creds in DEMO_CREDENTIALS.values() for v in creds.values() if len(v) >= 8})


def scan_secrets(sims: Sims, server: GeofedServer, responses: list[httpx.Response]) -> None:
    tokens = sims.get("carbonmapper", "/_sim/tokens").json()["all"]  # every token of every simulator
    assert tokens, "the simulators issued no token: the scan would prove nothing"
    wanted = [*SECRETS, *tokens]
    places = {"server log": server.log_text()}
    for n, response in enumerate(responses):
        places[f"response {n} ({response.request.url.path}) body"] = response.text
        places[f"response {n} headers"] = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
    hits = [(where, secret[:6] + "…") for where, text in places.items() for secret in wanted if secret in text]
    assert not hits, f"secrets shown: {hits}"


# ---------------------------------------------------------------- outcomes
def upstream_statuses(sims: Sims, upstream: str, path: str) -> list[int | None]:
    return [e["status"] for e in sims.log(upstream, path)]


def classify(response: httpx.Response, upstream: str, refused: bool) -> str:
    assert response.status_code != 500 and "Traceback" not in response.text, response.text[:2000]
    if response.status_code == 200:
        return RETRIED if refused else "200"
    assert response.headers["content-type"].split(";")[0] in ("application/json", "application/problem+json"), (
        response.headers, response.text[:500])
    document = response.json()
    assert isinstance(document, dict) and document.get("code") and document.get("description"), document
    assert TITLES[upstream] in document["description"], document
    return str(response.status_code)


def federation_outcome(response: httpx.Response, upstream: str) -> str:
    assert response.status_code == 200, response.text[:2000]
    body = response.json()
    members = body["federation:members"]
    others = [m for name, m in members.items() if name != upstream]
    assert others and all(m["status"] == "ok" for m in others), members
    assert body["features"], "the healthy member's items are missing"
    status = members[upstream]["status"]
    if status == "ok":
        return "full"
    assert members[upstream].get("message") or members[upstream].get("error"), members[upstream]
    return "partial"


def run_job(sims: Sims, call: Recorder, fault: str) -> str:
    """An AppEEARS job that meets the fault while it runs (status polls; the bundle listing for body faults)."""
    response = call.post("/processes/appeears-extract/execution",
                         json={"inputs": {**APPEEARS_INPUTS, "task_name": f"fault-{uuid.uuid4().hex[:8]}"}},
                         headers={"Prefer": "respond-async"})
    assert response.status_code == 201, response.text
    job = response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    path = "/bundle/" if fault in ("cut-short", "slow-drip") else PROBES["appeears"].fault_path
    settings = fault_settings("appeears", fault, path)
    sims.http.delete(f"{sims.url('appeears')}/_sim/log").raise_for_status()
    if settings is None:
        assert sims.expire_tokens("appeears") >= 1
    else:
        sims.faults("appeears", **settings)
    # the fault stays until the running job has met it, then the upstream heals
    met: Callable[[list[int | None]], bool] = lambda statuses: bool(statuses)  # noqa: E731
    if fault == "token-expired":
        met = lambda statuses: 403 in statuses  # noqa: E731 - AppEEARS' expiry signal
    elif settings is not None and settings.get("status"):
        met = lambda statuses: settings["status"] in statuses  # noqa: E731
    deadline = time.monotonic() + 15
    while not met(upstream_statuses(sims, "appeears", "" if fault == "token-expired" else path)):
        assert time.monotonic() < deadline, f"the job never met the fault: {sims.log('appeears')}"
        time.sleep(0.1)
    sims.http.delete(f"{sims.url('appeears')}/_sim/faults").raise_for_status()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        document = call.get(f"/jobs/{job}").json()
        if document["status"] in ("successful", "failed", "dismissed"):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"job {job} lost or hung: {document}")
    if document["status"] == "failed":
        assert "AppEEARS" in document.get("message", ""), document
        return "job failed"
    results = call.get(f"/jobs/{job}/results")
    assert results.status_code == 200 and results.json()["files"], results.text[:500]
    return f"job {document['status']}"


CELLS = [pytest.param(u, f, id=f"{u}-{f}") for u in UPSTREAMS for f in FAULTS]


@pytest.mark.usefixtures("quick_upstream_jobs")
@pytest.mark.parametrize(("upstream", "fault"), CELLS)
def test_fault_cell(upstream: str, fault: str, sims: Sims, matrix_server: GeofedServer) -> None:
    call = Recorder(matrix_server)
    expected_probe, expected_federated = EXPECTED[upstream][fault]
    probe = PROBES[upstream]
    started = time.monotonic()

    def inject() -> None:
        sims.clear(upstream)
        settings = fault_settings(upstream, fault, probe.fault_path)
        if settings is None:
            assert sims.expire_tokens(upstream) >= 1
        else:
            sims.faults(upstream, **settings)

    if upstream == "appeears":
        observed = run_job(sims, call, fault)
        federated = "-"
    else:
        inject()
        response = probe_request(upstream, call)
        statuses = upstream_statuses(sims, upstream, "")
        observed = classify(response, upstream, refused=any(s is not None and s >= 400 for s in statuses))
        if fault == "http-429":  # the wait asked for, in the upstream's unit, was honoured before the retry
            value, unit = RETRY_AFTER[upstream]
            times = [e["ts"] for e in sims.log(upstream, probe.fault_path)]
            assert len(times) >= 2 and times[1] - times[0] >= value / (1000 if unit == "ms" else 1) * 0.95
        inject()
        federated = federation_outcome(federated_search(upstream, call), upstream)
        sims.clear(upstream)
        healed = probe_request(upstream, call)
        assert healed.status_code == 200, f"{upstream} did not recover: {healed.text[:500]}"
    scan_secrets(sims, matrix_server, call.responses)
    assert (observed, federated) == (expected_probe, expected_federated)
    assert time.monotonic() - started < 60, "a cell must never come close to hanging"


# ---------------------------------------------------------------- the README says the same
def readme_table() -> dict[str, dict[str, tuple[str, str]]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Failure behaviour", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    names = {title: name for name, title in TITLES.items()}
    columns = [names[h] for h in header[1:]]
    table: dict[str, dict[str, tuple[str, str]]] = {name: {} for name in columns}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        fault = re.sub(r"`", "", cells[0]).split(" ")[0]
        for name, cell in zip(columns, cells[1:], strict=True):
            probe, _, federated = (part.strip() for part in cell.partition("·"))
            table[name][fault] = (probe, federated or "-")
    return table


def test_readme_failure_table_matches_the_matrix() -> None:
    assert readme_table() == EXPECTED


def test_a_body_trickling_in_past_the_timeout_is_a_504(sims: Sims, matrix_server: GeofedServer) -> None:
    """Each piece of the body comes within the read timeout, the whole takes far longer than it: the call ends
    at GEOFED_HTTP_TIMEOUT (per attempt), as a 504 naming the upstream — not a 200 many seconds later."""
    call = Recorder(matrix_server)
    sims.faults("carbonmapper", path=PROBES["carbonmapper"].fault_path, drip_ms=TIMEOUT * 1000 * 0.6)
    try:
        response = call.get("/collections/carbonmapper-plumes/items",
                            params={"f": "json", "limit": 100, "datetime": fresh_interval()})
        dripped = sims.log("carbonmapper", PROBES["carbonmapper"].fault_path)
    finally:
        sims.clear("carbonmapper")
    assert dripped, "the fault was never met"
    assert response.status_code == 504, response.text[:500]
    assert classify(response, "carbonmapper", refused=False) == "504"
    scan_secrets(sims, matrix_server, call.responses)
