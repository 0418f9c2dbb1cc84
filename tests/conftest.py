"""Test harness: real simulators on loopback, and real geofed servers (subprocesses) pointed at them.

- `sims`: every simulator, started once in this process on a loopback port, with helpers to inject faults
  and read request logs over HTTP (the simulators' `/_sim/*` routes). Faults and logs are reset before
  each test.
- `geofed`: one geofed server for the session, configured exactly like a production deployment
  (`GEOFED_<UPSTREAM>_URL` + credentials, demo mode off) but with the simulators' URLs.
- `start_geofed(**env)`: a fresh server with extra settings (e.g. a prefixed public URL); stopped after the test.

Never monkeypatch client code: faults go through the simulators.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from geofed.http.policy import HttpPolicy
from simulators import NAMES, geofed_env
from simulators.server import SimulatorServer, accepts, free_port

ROOT = Path(__file__).resolve().parent.parent


class Sims:
    """Handle on the running simulators."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.urls = server.base_urls
        # idle connections let go before the simulators close them (KEEP_ALIVE_SECONDS), as geofed's own pool does
        self.http = httpx.Client(timeout=30, limits=httpx.Limits(keepalive_expiry=HttpPolicy.keepalive_expiry))

    def url(self, name: str) -> str:
        return self.urls[name]

    def faults(self, name: str, **faults: Any) -> None:
        self.http.post(f"{self.urls[name]}/_sim/faults", json=faults).raise_for_status()

    def clear(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.urls):
            self.http.delete(f"{self.urls[n]}/_sim/faults").raise_for_status()
            self.http.delete(f"{self.urls[n]}/_sim/log").raise_for_status()

    def log(self, name: str, path_contains: str = "", method: str | None = None) -> list[dict[str, Any]]:
        entries = self.http.get(f"{self.urls[name]}/_sim/log").json()
        return [e for e in entries if path_contains in e["path"] and (method is None or e["method"] == method)]

    def expire_tokens(self, name: str) -> int:
        return int(self.http.post(f"{self.urls[name]}/_sim/tokens/expire").json()["expired"])

    def info(self, name: str) -> dict[str, Any]:
        return self.http.get(f"{self.urls[name]}/_sim/info").json()

    def get(self, name: str, path: str, **kwargs: Any) -> httpx.Response:
        """Reads the simulator directly (the test's 'truth')."""
        return self.http.get(f"{self.urls[name]}{path}", **kwargs)

    def post(self, name: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.urls[name]}{path}", **kwargs)


@dataclass
class GeofedServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        return httpx.get(f"{self.url}{path}", **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        return httpx.post(f"{self.url}{path}", **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        return httpx.delete(f"{self.url}{path}", **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def launch_geofed(env: dict[str, str], data_dir: Path, port: int | None = None, timeout: float = 60) -> GeofedServer:
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOFED_", "PYGEOAPI_"))}
    full_env.update({
        "GEOFED_HOST": "127.0.0.1",
        "GEOFED_PORT": str(port),
        "GEOFED_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GEOFED_DATA_DIR": str(data_dir),
        "GEOFED_LOG_LEVEL": "WARNING",
    })
    full_env.update(env)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "geofed.cli", "serve"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"geofed exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return GeofedServer(url, process, data_dir, full_env, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"geofed did not start in {timeout} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def sims() -> Iterator[Sims]:
    # geofed's own five, whatever plugins a test module put on sys.path before this fixture first ran
    server = SimulatorServer(names=list(NAMES)).start()
    yield Sims(server)
    server.stop()


@pytest.fixture(autouse=True)
def _reset_sims(request: pytest.FixtureRequest) -> None:
    if "sims" in request.fixturenames:
        request.getfixturevalue("sims").clear()


@pytest.fixture(scope="session")
def geofed_env_vars(sims: Sims) -> dict[str, str]:
    return {**geofed_env(sims.urls), "GEOFED_DEMO": "0"}


@pytest.fixture(scope="session")
def geofed(sims: Sims, geofed_env_vars: dict[str, str]) -> Iterator[GeofedServer]:
    with tempfile.TemporaryDirectory(prefix="geofed-test-") as tmp:
        server = launch_geofed(geofed_env_vars, Path(tmp))
        yield server
        server.stop()


@pytest.fixture
def start_geofed(
    geofed_env_vars: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., GeofedServer]]:
    started: list[GeofedServer] = []

    def start(with_simulators: bool = True, data_dir: Path | None = None, **env: str) -> GeofedServer:
        base = dict(geofed_env_vars) if with_simulators else {}
        server = launch_geofed({**base, **env}, data_dir or tmp_path / f"geofed-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ----------------------------------------------------------------- service-backed tests
# Tests of the PostgreSQL/Redis paths skip with a reason starting "REQUIRES-SERVICE:" when the server is absent
# (likewise "REQUIRES-TOOL:" for ogrinfo, "REQUIRES-SCHEMAS:" for the schema mirror).
# `.ci/run` sets GEOFED_REQUIRE_SERVICES=1, which turns such a skip into a failure: CI machines have the services.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("GEOFED_REQUIRE_SERVICES") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "REQUIRES-" in reason:  # REQUIRES-SERVICE / -TOOL / -SCHEMAS: CI provides all of them
            report.outcome = "failed"
            report.longrepr = f"required service missing in CI: {reason}"


def require_service(host: str, port: int, name: str) -> None:
    """Skips (locally) or fails (CI) the calling test when a TCP service is not listening."""
    if not accepts(host, port, timeout=2):
        pytest.skip(f"REQUIRES-SERVICE: {name} at {host}:{port} is not reachable")


@pytest.fixture(scope="module")
def quick_spaceknow_pipelines(sims: Sims) -> Iterator[None]:
    """SpaceKnow pipelines that resolve after two polls with nextTry 0, so tests do not wait SpaceKnow's seconds.

    Modules opt in with `pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")`.
    """
    before = sims.get("spaceknow", "/_sim/config").json()
    sims.post("spaceknow", "/_sim/config", json={"next_try": 0, "polls": 2}).raise_for_status()
    yield
    sims.post("spaceknow", "/_sim/config", json=before).raise_for_status()


# ----------------------------------------------------------------- offline STAC validation
# The schemas the tests validate against are in the repository (tests/schemas, sources and licenses in its
# SOURCES.md), laid out by URL; GEOFED_SCHEMAS_DIR points at another mirror. Nothing is fetched online.
SCHEMAS = Path(os.environ.get("GEOFED_SCHEMAS_DIR") or ROOT / "tests" / "schemas")
SCHEMA_PREFIXES = {
    "https://schemas.stacspec.org/": SCHEMAS / "stac",
    "https://stac-extensions.github.io/": SCHEMAS / "stac-extensions",
    "https://geojson.org/schema/": SCHEMAS / "stac" / "geojson.org" / "schema",
}


UNMIRRORED: set[str] = set()  # extension schemas validation met that the mirror lacks (reported, not fetched)


def local_schema(url: str) -> Path:
    for prefix, folder in SCHEMA_PREFIXES.items():
        if url.startswith(prefix):
            return folder / url[len(prefix):]
    raise AssertionError(f"schema {url} is not in the offline mirror")


def offline_stac_validator() -> Any:
    """pystac's JSON-schema validator reading every schema from the mirror (a missing one fails the test)."""
    import json

    from pystac.validation import JsonSchemaSTACValidator

    class OfflineValidator(JsonSchemaSTACValidator):
        def _get_schema(self, schema_uri: str) -> dict[str, Any]:  # pystac's single fetch point
            if schema_uri not in self.schema_cache:
                path = local_schema(schema_uri)
                if not path.exists() and schema_uri.startswith("https://stac-extensions.github.io/"):
                    # an extension the mirror lacks (e.g. sar, scientific): core still validated; said so
                    UNMIRRORED.add(schema_uri)
                    return {}
                self.schema_cache[schema_uri] = json.loads(path.read_text())
            return self.schema_cache[schema_uri]

    return OfflineValidator()


@pytest.fixture(scope="session")
def stac_validate() -> Callable[[dict[str, Any]], list[str]]:
    """`stac_validate(obj)` → the schema errors of a STAC item, collection or catalog dict (empty when valid),
    core and extension schemas, offline."""
    import pystac
    from pystac.validation import validate_dict

    validator = offline_stac_validator()

    def validate(obj: dict[str, Any]) -> list[str]:
        try:
            validate_dict(obj, validator=validator)
        except pystac.STACValidationError as exc:
            return [f"{obj.get('id')}: {str(exc).splitlines()[0]}"]
        return []

    return validate
