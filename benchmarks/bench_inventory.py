"""`emissions-inventory` fan-out: the inventory's wall time ÷ the slowest single upstream read it makes
(goal ≤ 1.3: the upstreams are read in parallel, so the inventory costs little more than its slowest upstream).

The inventory is executed synchronously through a real geofed server (subprocess) on the simulators (another
subprocess). Each of its upstream reads (CarbonMapper plumes, CarbonMapper sources, Epoch plots, the Sentinel Hub
Catalog search, the SpaceKnow search) is then timed *alone*, in this process, through the same geofed sources and
clients the inventory uses (`providers.inventory.compute`), one after the other. Read caches are off in both
(`GEOFED_CACHE_TTL=0`, `GEOFED_SPACEKNOW_SEARCH_CACHE_TTL=0`), tokens are fetched once before timing, and each
figure is the median of `BENCH_INVENTORY_RUNS` runs after a warm-up run (Epoch's parked streams serve repeated
identical reads on both sides; each section's time inside the first, cold inventory is printed beside them).
Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks.harness import geofed_process, simulators_process

RUNS = int(os.environ.get("BENCH_INVENTORY_RUNS", "3"))
PERMIAN = [[-103.9, 31.7], [-103.3, 31.7], [-103.3, 32.2], [-103.9, 32.2], [-103.9, 31.7]]
SLOVENIA = [[13.9, 45.9], [14.6, 45.9], [14.6, 46.3], [13.9, 46.3], [13.9, 45.9]]
SOUBRE = [[-6.7, 5.7], [-6.5, 5.7], [-6.5, 5.9], [-6.7, 5.9], [-6.7, 5.7]]
INPUTS: dict[str, Any] = {
    "geometry": {"type": "MultiPolygon", "coordinates": [[PERMIAN], [SLOVENIA], [SOUBRE]]},
    "datetime": "2023-01-01/2024-12-31", "epoch_collections": ["cocoa-civ-2024"], "cloud_cover_max": 20,
}
NO_CACHE = {"GEOFED_CACHE_TTL": "0", "GEOFED_SPACEKNOW_SEARCH_CACHE_TTL": "0"}


def median_seconds(call: Callable[[], Any], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def single_reads(env: dict[str, str]) -> dict[str, float]:
    """Each upstream read of the inventory alone, through geofed's own sources, in this process."""
    os.environ.update({**env, **NO_CACHE, "GEOFED_DEMO": "0"})
    from geofed.http.loop import run_sync
    from geofed.settings import get_settings

    get_settings.cache_clear()
    import geofed.query  # noqa: F401 - loads the query engine before the providers (import order)
    from providers.inventory import compute
    from providers.inventory.inputs import parse_inputs

    inputs = parse_inputs(INPUTS)
    out: dict[str, float] = {}
    for section in compute.sections(inputs):
        run_sync(section.read(inputs, compute.ASYNC_MAX_FEATURES))  # tokens, connections, the sims' tables
        out[f"{section.upstream}/{section.name}"] = median_seconds(
            lambda s=section: run_sync(s.read(inputs, compute.ASYNC_MAX_FEATURES)))
    return out


def main() -> None:
    with simulators_process() as env, geofed_process({**env, **NO_CACHE}) as geofed:
        client = httpx.Client(timeout=600)
        url = f"{geofed.url}/processes/emissions-inventory/execution"

        def inventory() -> dict[str, Any]:
            response = client.post(url, json={"inputs": INPUTS})
            response.raise_for_status()
            return response.json()["summary"]

        summary = inventory()  # warm: tokens, connections, the simulators' tables
        wall = median_seconds(inventory)
        singles = single_reads(env)
    slowest_name, slowest = max(singles.items(), key=lambda kv: kv[1])
    print(f"inventory (sync, {len(singles)} upstream reads in parallel): {wall:6.2f} s median of {RUNS}; "
          f"{summary['plumes']['count']} plumes, {summary['sources']['count']} sources, "
          f"{summary['plots']['count']} plots, {summary['sentinelhub']['count']} Sentinel Hub and "
          f"{summary['spaceknow']['count']} SpaceKnow scenes")
    cold = {f"{u}/{n}": s["seconds"] for u, b in summary["upstreams"].items() for n, s in b["sections"].items()}
    for name, seconds in sorted(singles.items(), key=lambda kv: -kv[1]):
        print(f"    alone: {name:<26} {seconds:6.2f} s   (inside the first, cold inventory: {cold[name]:.2f} s)")
    print(f"inventory / slowest single upstream read ({slowest_name}): {wall / slowest:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
