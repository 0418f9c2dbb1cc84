"""Benchmark harness: real processes on loopback, measured side by side in one run.

- `simulators_process()` runs `geofed simulate` in a subprocess (so the load generator, geofed and the
  upstreams do not share a GIL) and returns the simulators' base URLs.
- `geofed_process(env)` runs `geofed serve` pointed at them, as a production deployment would be.
- `load(url, requests, concurrency)` drives a URL with httpx and returns requests/s and latency percentiles.
- `peak_rss_mb(pid)` reads the kernel's high-water mark of a process's resident memory.

Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOFED_", "PYGEOAPI_", "SIM_"))}
    env.update(extra)
    return env


def server_settings() -> dict[str, str]:
    """`BENCH_GEOFED_X=v` runs a benchmark's server with `GEOFED_X=v` (the harness drops the caller's own
    GEOFED_*), to compare settings: e.g. `BENCH_GEOFED_MAX_ACTIVE_REQUESTS=0` (no admission control)."""
    return {k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_GEOFED_")}


@contextmanager
def simulators_process(extra_env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Runs every simulator in its own process; yields the GEOFED_* environment pointing at them."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "geofed.cli", "simulate", "--port", str(port)],
        cwd=ROOT, env=_clean_env(extra_env or {}), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    env: dict[str, str] = {}
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode().strip()
        if line.startswith("# admin"):
            break
        if line.startswith("export GEOFED_"):  # `geofed simulate` prints shell `export` lines
            key, _, value = shlex.split(line)[1].partition("=")
            env[key] = value
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    try:
        first = next(v for k, v in env.items() if k.endswith("_URL") and "TOKEN" not in k and "AUTH" not in k)
        _wait(f"{first}/_sim/info", process)
        yield env
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Server:
    url: str
    pid: int
    log: Path  # the server's stdout and stderr (exists while the server runs)

    def tracebacks(self) -> list[str]:
        """Every traceback in the server's log so far, whole."""
        text = self.log.read_text(errors="replace")
        return [f"Traceback{part}".split("\nINFO:", 1)[0] for part in text.split("Traceback")[1:]]


@contextmanager
def geofed_process(env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="geofed-bench-") as data_dir:
        full = _clean_env({
            "GEOFED_DEMO": "0", "GEOFED_PORT": str(port), "GEOFED_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "GEOFED_DATA_DIR": data_dir, "GEOFED_LOG_LEVEL": "WARNING", **env,
        })
        log = Path(data_dir) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "geofed.cli", "serve"], cwd=ROOT, env=full,
                                       stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(f"{url}/healthz", process)
            yield Server(url, process.pid, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@contextmanager
def pygeoapi_process(config_path: Path, openapi_path: Path) -> Iterator[Server]:
    """Stock pygeoapi (its own Starlette app under uvicorn) for like-for-like comparisons."""
    port = free_port()
    env = _clean_env({"PYGEOAPI_CONFIG": str(config_path), "PYGEOAPI_OPENAPI": str(openapi_path)})
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port), "--log-level",
         "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/conformance", process)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=15)


@dataclass
class Stats:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    def line(self, label: str) -> str:
        return (f"{label:<48} {self.rps:9.1f} req/s   p50 {self.p50:8.1f} ms   p95 {self.pct(95):8.1f} ms"
                f"   ({self.requests} requests, {self.errors} errors)")


def load(url: str, requests: int = 200, concurrency: int = 8, warmup: int = 5,
         params: dict[str, str] | None = None) -> Stats:
    """GETs `url` `requests` times from `concurrency` threads (after `warmup` untimed requests)."""
    with httpx.Client(timeout=120) as client:
        for _ in range(warmup):
            client.get(url, params=params)
        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        counter = iter(range(requests))

        def worker() -> None:
            nonlocal errors
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                started = time.perf_counter()
                response = client.get(url, params=params)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors += 1

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return Stats(requests, time.perf_counter() - started, latencies, errors)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident set size (`VmRSS`, or its peak `VmHWM`) in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set size of a process, from /proc (Linux)."""
    return rss_mb(pid, "VmHWM")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
