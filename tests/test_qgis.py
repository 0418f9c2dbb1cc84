"""QGIS (PyQGIS, headless) opens geofed's OGC API – Features collections: layers, feature counts, subset filters.

QGIS runs with Debian's `/usr/bin/python3` (python3-qgis, installed by `.ci/run`), not the venv, in a subprocess;
the layer is deleted before `exitQgis()` (otherwise the process segfaults at exit). Debian bookworm ships QGIS
3.22, whose OAPIF provider predates OGC API – Features Part 3 (filter pushdown arrived in QGIS 3.28): it applies
a subset string on the client, so this test checks what QGIS shows, and that geofed's `/conformance` lets a newer
QGIS push the filter (tests/test_ogc_conformance.py shows GDAL doing so through geofed to the upstream).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

QGIS_PYTHON = "/usr/bin/python3"
SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from qgis.core import QgsApplication, QgsVectorLayer
    app = QgsApplication([], False)
    app.initQgis()
    url, collection, subset = sys.argv[1], sys.argv[2], sys.argv[3]
    layer = QgsVectorLayer(f"url='{url}' typename='{collection}' pagingEnabled='true'", collection, "OAPIF")
    out = {"valid": layer.isValid(), "count": layer.featureCount()}
    if subset:
        out["subset_ok"] = layer.setSubsetString(subset)
        out["fields"] = layer.fields().names()
        out["features"] = sorted(str(f["id"]) for f in layer.getFeatures())
    del layer
    app.exitQgis()
    print("RESULT " + json.dumps(out), flush=True)
""")


def run_qgis(url: str, collection: str, subset: str = "") -> dict[str, Any]:
    if not Path(QGIS_PYTHON).exists() or subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("REQUIRES-TOOL: PyQGIS (Debian python3-qgis)")
    result = subprocess.run(["timeout", "300", QGIS_PYTHON, "-c", SCRIPT, url, collection, subset],
                            capture_output=True, text=True, timeout=330, cwd="/tmp")
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(line[len("RESULT "):])


def test_qgis_shows_the_real_feature_count_and_filters(geofed: Any, sims: Any) -> None:
    expected: list[str] = []
    while True:  # the simulator's own answer, page by page (its pages hold at most 1000 plumes)
        page = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated", params=[
            ("plume_gas", "CH4"), ("sectors", "1B2"), ("limit", "1000"), ("offset", str(len(expected)))]).json()
        expected += [p["plume_id"] for p in page["items"]]
        if not page["items"] or len(expected) >= page["total_count"]:
            break
    total = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated", params={"limit": 1}).json()["total_count"]
    shown = run_qgis(geofed.url, "carbonmapper-plumes", "gas = 'CH4' AND sector = '1B2'")
    assert shown["valid"] and shown["subset_ok"]
    assert shown["count"] == total, "QGIS's feature count is geofed's numberMatched"
    assert len(expected) == page["total_count"] and shown["features"] == sorted(expected)


def test_qgis_counts_epoch_plots(geofed: Any, sims: Any) -> None:
    plots = sims.info("epoch")["plots"]
    shown = run_qgis(geofed.url, "epoch-plots")
    assert shown["valid"] and shown["count"] == plots
