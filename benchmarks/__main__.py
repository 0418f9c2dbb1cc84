"""Runs the benchmarks: `python -m benchmarks` (all) or `python -m benchmarks foundation epoch ...`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = argv or names
    failed = 0
    for name in wanted:
        print(f"\n=== benchmark: {name} ===", flush=True)
        try:
            importlib.import_module(f"benchmarks.bench_{name}").main()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
