"""Load (issue 15): 200 concurrent clients for 60 s against a server started like `make serve`.

`geofed serve` in demo mode (its simulators in-process, on loopback), driven by a bounded asyncio + httpx script
in this process: each client loops over a weighted mix of what users do —

- OGC item pages with filters (CarbonMapper plumes and sources, Epoch plots, SpaceKnow scenes),
- STAC searches, single collection (CarbonMapper, Sentinel Hub) and federated (every member),
- a sync process (`sentinelhub-statistics`),
- an async job (`appeears-extract`, `Prefer: respond-async`) polled every second until it is final —

and the script prints requests/s, p50/p95/p99, the error count (non-2xx answers, dropped connections, jobs that
failed or were not final in time) and the server's RSS: idle (after one request of each kind), at the start of
the measured run (after `BENCH_LOAD_WARMUP` seconds of the same load) and at its end.
Goal: 0 errors and RSS end ≤ start + 20 %.

`python -m benchmarks load`; `BENCH_LOAD_CLIENTS` and `BENCH_LOAD_SECONDS` change the load (defaults 200, 60);
`BENCH_LOAD_ROUNDS` repeats it against the same server (RSS printed after each round); `BENCH_GEOFED_X=v` sets
the server's `GEOFED_X`.
Everything runs on 127.0.0.1; the run is bounded (no request starts after the duration; stragglers are given
`DRAIN` seconds and then cancelled and counted as errors). Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks.harness import geofed_process, rss_mb, server_settings

CLIENTS = int(os.environ.get("BENCH_LOAD_CLIENTS", "200"))
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
# more rounds against the same server tell a leak (RSS grows every round) from caches filling (it levels off)
ROUNDS = int(os.environ.get("BENCH_LOAD_ROUNDS", "1"))
# Seconds of the same load before the measured run, not counted: a server's working set at full concurrency
# (a thread stack and a SQLite connection per worker thread, connection pools, caches, allocator high-water
# marks) is reached in the first seconds; growth after that is what a leak looks like. Both RSS figures print.
WARMUP = float(os.environ.get("BENCH_LOAD_WARMUP", "15"))
DRAIN = 60.0  # seconds in-flight requests may take after the run
REQUEST_TIMEOUT = 60.0
POLYGON = {"type": "Polygon", "coordinates": [[[13.60, 45.55], [13.85, 45.55], [13.85, 45.75], [13.60, 45.75],
                                               [13.60, 45.55]]]}
STATISTICS = {"geometry": POLYGON, "collection": "sentinel-2-l2a", "start": "2023-05-01", "end": "2023-06-30",
              "interval": "P10D", "index": "NDVI", "resolution": 20}
APPEEARS = {"task_type": "point", "start_date": "2019-01-01", "end_date": "2019-01-31",
            "layers": [{"product": "VNP21A1D.002", "layer": "LST_1KM"}],
            "points": [{"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1"}]}


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    async def call(self, client: httpx.AsyncClient, kind: str, method: str, path: str, **kwargs: Any
                   ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.error(kind, f"{type(exc).__name__} on {method} {path}")
            return None
        self.latencies[kind].append(time.perf_counter() - started)
        if response.status_code >= 400:
            self.error(kind, f"HTTP {response.status_code} on {method} {path}: {response.text[:200]}")
            return None
        return response

    def error(self, kind: str, example: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, example)


# ---------------------------------------------------------------- what one client does
async def ogc_page(client: httpx.AsyncClient, rec: Recorder, rng: random.Random) -> None:
    choice = rng.choice([
        ("/collections/carbonmapper-plumes/items", {"filter": "gas='CH4'", "limit": 20}),
        ("/collections/carbonmapper-plumes/items", {"bbox": "-120,30,-100,45", "limit": 10}),
        ("/collections/carbonmapper-sources/items", {"limit": 20}),
        ("/collections/epoch-plots/items", {"limit": 20}),
        ("/collections/spaceknow-scenes/items", {"bbox": "-104.3,31.0,-102.1,32.9", "limit": 10}),
    ])
    path, params = choice
    await rec.call(client, "ogc items", "GET", path,
                   params={"f": "json", "offset": rng.randrange(0, 60), **params})


async def stac_single(client: httpx.AsyncClient, rec: Recorder, rng: random.Random) -> None:
    params = rng.choice([
        {"collections": "carbonmapper-plumes", "limit": 10, "filter": "gas='CH4'"},
        {"collections": "sentinelhub:sentinel-2-l2a", "limit": 10, "bbox": "13.6,45.55,13.85,45.75"},
        {"collections": "epoch-plots", "limit": 10},
    ])
    await rec.call(client, "stac search (one collection)", "GET", "/stac/search", params=params)


async def stac_federated(client: httpx.AsyncClient, rec: Recorder, rng: random.Random) -> None:
    await rec.call(client, "stac search (federated)", "GET", "/stac/search",
                   params={"limit": 10, "bbox": rng.choice(["-180,-90,180,90", "-125,25,-65,50"])})


async def sync_process(client: httpx.AsyncClient, rec: Recorder, rng: random.Random) -> None:
    await rec.call(client, "sync process", "POST", "/processes/sentinelhub-statistics/execution",
                   json={"inputs": STATISTICS})


async def async_job(client: httpx.AsyncClient, rec: Recorder, rng: random.Random, deadline: float) -> None:
    inputs = {**APPEEARS, "task_name": f"load-{rng.getrandbits(40):x}"}
    response = await rec.call(client, "job submit", "POST", "/processes/appeears-extract/execution",
                              json={"inputs": inputs}, headers={"Prefer": "respond-async"})
    if response is None:
        return
    location = response.headers.get("Location", "")
    job = location.rstrip("/").rsplit("/", 1)[-1]
    while time.monotonic() < deadline + DRAIN / 2:
        await asyncio.sleep(1.0)
        status = await rec.call(client, "job poll", "GET", f"/jobs/{job}")
        if status is None:
            return
        state = status.json().get("status")
        if state == "successful":
            return
        if state in ("failed", "dismissed"):
            rec.error("job final", f"job {job} {state}: {status.json().get('message')}")
            return
    rec.error("job final", f"job {job} not final in time")


MIX: list[tuple[float, str]] = [(0.40, "ogc"), (0.25, "stac"), (0.15, "federated"), (0.10, "sync"), (0.10, "job")]


async def client_loop(n: int, client: httpx.AsyncClient, rec: Recorder, deadline: float) -> None:
    rng = random.Random(n)
    actions: dict[str, Callable[..., Any]] = {"ogc": ogc_page, "stac": stac_single, "federated": stac_federated,
                                              "sync": sync_process}
    await asyncio.sleep(rng.random())  # clients arrive over the first second, not all in one instant
    while time.monotonic() < deadline:
        kind = rng.choices([k for _, k in MIX], weights=[w for w, _ in MIX])[0]
        if kind == "job":
            await async_job(client, rec, rng, deadline)
        else:
            await actions[kind](client, rec, rng)


async def drive(url: str, seconds: float = SECONDS) -> tuple[Recorder, float]:
    rec = Recorder()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        started = time.monotonic()
        deadline = started + seconds
        tasks = [asyncio.create_task(client_loop(n, client, rec, deadline)) for n in range(CLIENTS)]
        done, pending = await asyncio.wait(tasks, timeout=seconds + DRAIN)
        for task in pending:
            task.cancel()
            rec.error("unfinished", "a client was still waiting after the drain period")
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                rec.error("client crash", repr(task.exception()))
        return rec, time.monotonic() - started


# ---------------------------------------------------------------- the server and its memory
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else float("nan")


def warm_up(url: str) -> None:
    """One of each request, so that RSS at start is the server's working size, not its import size."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for path in ("/collections/carbonmapper-plumes/items?f=json&limit=5", "/collections/epoch-plots/items?f=json",
                     "/collections/carbonmapper-sources/items?f=json",
                     "/collections/spaceknow-scenes/items?f=json&bbox=-104.3,31.0,-102.1,32.9",
                     "/stac/search?limit=5", "/stac/search?collections=sentinelhub:sentinel-2-l2a&limit=5"):
            client.get(path)
        client.post("/processes/sentinelhub-statistics/execution", json={"inputs": STATISTICS})


def main() -> None:
    # `make serve`'s demo mode (simulators in the server's child process), plus any BENCH_GEOFED_* settings
    with geofed_process({"GEOFED_DEMO": "1", **server_settings()}) as server:
        url = server.url
        warm_up(url)
        idle_rss = rss_mb(server.pid)
        if WARMUP > 0:
            warm, _ = asyncio.run(drive(url, WARMUP))
            print(f"  warm-up: {WARMUP:.0f} s of the same load, {sum(map(len, warm.latencies.values()))} "
                  f"requests (not counted), {sum(warm.errors.values())} errors", flush=True)
        start_rss = rss_mb(server.pid)
        for round_ in range(ROUNDS):
            rec, elapsed = asyncio.run(drive(url))
            if ROUNDS > 1:
                print(f"  round {round_ + 1}: {sum(map(len, rec.latencies.values()))} requests, "
                      f"{sum(rec.errors.values())} errors, RSS {rss_mb(server.pid):.0f} MB", flush=True)
        end_rss, peak_rss = rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
        tail = [line for line in server.log.read_text(errors="replace").splitlines()
                if "Traceback" in line or "ERROR" in line]
    report(rec, elapsed, (idle_rss, start_rss, end_rss, peak_rss), tail)


def report(rec: Recorder, elapsed: float, rss: tuple[float, float, float, float], log_errors: list[str]) -> None:
    idle_rss, start_rss, end_rss, peak_rss = rss
    every = [x for values in rec.latencies.values() for x in values]
    errors = sum(rec.errors.values())
    print(f"load: {CLIENTS} clients, {SECONDS:.0f} s (+ drain), loopback, `geofed serve` in demo mode")
    for kind, values in sorted(rec.latencies.items()):
        print(f"  {kind:<30} {len(values):6d} requests   p50 {percentile(values, 50):8.1f} ms   "
              f"p95 {percentile(values, 95):8.1f} ms   p99 {percentile(values, 99):8.1f} ms   "
              f"errors {rec.errors.get(kind, 0)}")
    print(f"  all: {len(every)} requests in {elapsed:.1f} s = {len(every) / elapsed:.1f} requests/s;  "
          f"p50 {percentile(every, 50):.1f} ms  p95 {percentile(every, 95):.1f} ms  p99 {percentile(every, 99):.1f} ms")
    print(f"  errors: {errors}" + (f"  {dict(rec.errors)}" if errors else ""))
    for kind, example in rec.examples.items():
        print(f"    e.g. {kind}: {example}")
    growth = (end_rss / start_rss - 1) * 100 if start_rss else float("nan")
    verdict = "flat" if growth <= 20 else "GREW"
    print(f"  server RSS: idle {idle_rss:.0f} MB; after the warm-up {start_rss:.0f} MB; end {end_rss:.0f} MB "
          f"({growth:+.0f} % over the measured run, {verdict}); peak {peak_rss:.0f} MB")
    print(f"  server log: {len(log_errors)} ERROR/Traceback lines" + (f", e.g. {log_errors[0][:200]}"
                                                                     if log_errors else ""))


if __name__ == "__main__":
    main()
