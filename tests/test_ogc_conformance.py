"""The OGC face advertises what every collection serves, so GDAL and QGIS push filters to geofed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

PART3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"


def test_conformance_lists_features_part_3_filter_and_nothing_unserved(geofed: Any) -> None:
    classes = set(geofed.get("/conformance", params={"f": "json"}).json()["conformsTo"])
    for needed in ("filter", "features-filter", "queryables"):
        assert PART3 + needed in classes
    assert {"http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
            "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"} <= classes
    assert not [c for c in classes if "ogcapi-features-4" in c], "geofed's collections are read-only"


def test_gdal_pushes_a_where_clause_to_geofed_and_on_to_the_upstream(geofed: Any, sims: Any) -> None:
    if shutil.which("ogrinfo") is None:
        pytest.skip("REQUIRES-TOOL: ogrinfo (gdal-bin)")
    truth = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                     params=[("plume_gas", "CH4"), ("sectors", "1B2"), ("limit", "1")]).json()["total_count"]
    assert truth > 0
    sims.clear("carbonmapper")
    result = subprocess.run(
        ["timeout", "120", "ogrinfo", "-ro", "-so", "-where", "gas = 'CH4' AND sector = '1B2'",
         f"OAPIF:{geofed.url}", "carbonmapper-plumes"], capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    assert f"Feature Count: {truth}" in result.stdout, result.stdout
    pushed = [e for e in sims.log("carbonmapper", "/plumes/annotated") if "plume_gas=CH4" in e["query"]]
    assert pushed, "the filter reached the upstream as its own parameters"
