"""Memory over OpenAPI-driven fuzzing (issue 15 §5): schemathesis over both faces, round after round, against a
server started like `make serve` (demo mode, simulators in their child process).

The same fuzzing as `tests/test_openapi_fuzz.py` (every operation but DELETE and process execution, schema-valid
and schema-invalid cases), with more examples per operation, repeated `BENCH_FUZZ_ROUNDS` times (default 3). It
prints the cases, the failures (5xx or an undocumented status) and the server's RSS before the first round and
after each one. Goal: no failure, and RSS after the last round ≤ after the first + 20 % (the first round fills
caches and pools; a leak keeps growing). Figures are printed, never asserted.

`python -m benchmarks fuzz`; `BENCH_FUZZ_STAC_EXAMPLES`, `BENCH_FUZZ_OGC_EXAMPLES` (defaults 40, 12) per
operation and generation mode; `BENCH_GEOFED_X=v` runs the server with `GEOFED_X=v`.
"""

from __future__ import annotations

import os
import time

from benchmarks.harness import geofed_process, rss_mb, server_settings
from tests.test_openapi_fuzz import fuzz_both_faces, schema_mirror

ROUNDS = int(os.environ.get("BENCH_FUZZ_ROUNDS", "3"))
STAC_EXAMPLES = int(os.environ.get("BENCH_FUZZ_STAC_EXAMPLES", "40"))
OGC_EXAMPLES = int(os.environ.get("BENCH_FUZZ_OGC_EXAMPLES", "12"))


def main() -> None:
    with schema_mirror() as mirror, geofed_process({"GEOFED_DEMO": "1", **server_settings()}) as server:
        before = rss_mb(server.pid)
        print(f"fuzz: {ROUNDS} rounds × (STAC {STAC_EXAMPLES}, OGC {OGC_EXAMPLES} examples per operation and mode)"
              f"; server RSS before: {before:.0f} MB", flush=True)
        after: list[float] = []
        for round_ in range(ROUNDS):
            started = time.monotonic()
            failures, stac_cases, ogc_cases = fuzz_both_faces(server.url, mirror, STAC_EXAMPLES, OGC_EXAMPLES)
            after.append(rss_mb(server.pid))
            print(f"  round {round_ + 1}: {stac_cases} STAC + {ogc_cases} OGC cases in "
                  f"{time.monotonic() - started:.0f} s, {len(failures)} failing operations, "
                  f"RSS {after[-1]:.0f} MB", flush=True)
            for failure in failures[:3]:
                print(f"    e.g. {failure[:1500]}")
            if failures:
                for traceback in server.tracebacks()[-2:]:
                    print(f"    server log: {traceback[-2500:]}")
        growth = (after[-1] / after[0] - 1) * 100
        print(f"  server RSS: before {before:.0f} MB, after round 1 {after[0]:.0f} MB, after round {ROUNDS} "
              f"{after[-1]:.0f} MB ({growth:+.0f} % after round 1, {'flat' if growth <= 20 else 'GREW'}); "
              f"peak {rss_mb(server.pid, 'VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
