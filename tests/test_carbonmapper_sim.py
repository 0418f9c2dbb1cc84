"""The CarbonMapper simulator's contract (it is shared by other engineers' tests) and the STAC members."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pystac_client

from simulators.carbonmapper.data import INSTRUMENTS, SECTORS

ROOT = Path(__file__).resolve().parent.parent
PLUMES = "/api/v1/catalog/plumes/annotated"


def total(sims: Any, **params: Any) -> int:
    return int(sims.get("carbonmapper", PLUMES, params={**params, "limit": 1}).json()["total_count"])


def test_catalog_size_and_enums(sims: Any) -> None:
    assert total(sims) >= 5000
    assert total(sims, plume_gas="CH4") > 0 and total(sims, plume_gas="CO2") > 0
    for sector in SECTORS:
        assert total(sims, sectors=sector) > 0, sector
    for instrument in INSTRUMENTS:
        assert total(sims, instruments=instrument) > 0, instrument
    first = sims.get("carbonmapper", PLUMES, params={"limit": 3}).json()["items"]
    again = sims.get("carbonmapper", PLUMES, params={"limit": 3}).json()["items"]
    assert [p["plume_id"] for p in first] == [p["plume_id"] for p in again]


def test_rest_encoding_and_validation(sims: Any) -> None:
    ok = sims.get("carbonmapper", PLUMES, params=[("bbox", -104), ("bbox", 31), ("bbox", -103), ("bbox", 32)])
    assert ok.status_code == 200 and ok.json()["total_count"] > 0
    assert sims.get("carbonmapper", PLUMES, params={"bbox": "-104,31,-103,32"}).status_code == 422
    assert sims.get("carbonmapper", PLUMES, params={"plume_gas": "N2O"}).status_code == 422
    assert sims.get("carbonmapper", PLUMES, params={"limit": 1001}).status_code == 422
    assert sims.get("carbonmapper", "/api/v1/catalog/plume/nope").status_code == 404
    assert sims.get("carbonmapper", "/api/v1/catalog/source/CH4_6A_100m_0.0_0.0").status_code == 404


def test_tokens_pair_refresh_expiry(sims: Any) -> None:
    bad = sims.post("carbonmapper", "/api/v1/token/pair", json={"email": "x@y.z", "password": "no"})
    assert bad.status_code == 401
    pair = sims.post("carbonmapper", "/api/v1/token/pair",
                     json={"email": "demo@geofed.invalid", "password": "demo-password"}).json()
    auth = {"Authorization": f"Bearer {pair['access']}"}
    assert sims.get("carbonmapper", PLUMES, headers=auth).status_code == 200
    sims.expire_tokens("carbonmapper")
    assert sims.get("carbonmapper", PLUMES, headers=auth).status_code == 401
    assert sims.get("carbonmapper", PLUMES).status_code == 200  # anonymous reads stay open
    fresh = sims.post("carbonmapper", "/api/v1/token/refresh", json={"refresh": pair["refresh"]}).json()
    assert sims.get("carbonmapper", PLUMES, headers={"Authorization": f"Bearer {fresh['access']}"}).status_code == 200
    sims.post("carbonmapper", "/_sim/refresh/expire")
    assert sims.post("carbonmapper", "/api/v1/token/refresh", json={"refresh": fresh["refresh"]}).status_code == 401


def test_rate_limit_429_with_retry_after(sims: Any) -> None:
    sims.post("carbonmapper", "/_sim/ratelimit", json={"per_minute": 2})
    try:
        statuses = [sims.get("carbonmapper", PLUMES, params={"limit": 1}) for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["Retry-After"]) > 0
    finally:
        sims.post("carbonmapper", "/_sim/ratelimit", json={"per_minute": None})


def test_stac_api_through_pystac_client(sims: Any) -> None:
    root = f"{sims.url('carbonmapper')}/api/v1/stac/"
    client = pystac_client.Client.open(root, timeout=30)
    ids = {c.id for c in client.get_collections()}
    assert {"l2b-ch4-mfa-v3a", "l4a-combined-ch4-v3a", "l3a-ime-ch4-mfa-v3a"} <= ids
    search = client.search(collections=["l3a-ime-ch4-mfa-v3a"], bbox=[76.7, 28.2, 77.5, 29.0], limit=7,
                           max_items=500)
    items = [i.id for i in search.items()]
    truth = {p["plume_id"] for p in sims.get("carbonmapper", PLUMES, params=[
        ("plume_gas", "CH4"), ("limit", 1000), *[("bbox", v) for v in (76.7, 28.2, 77.5, 29.0)]]).json()["items"]}
    assert len(items) == len(set(items)) and set(items) == truth
    bad = sims.get("carbonmapper", "/api/v1/stac/search", params=[("bbox", 1), ("bbox", 2), ("bbox", 3), ("bbox", 4)])
    assert bad.status_code == 422


def test_stac_members_read_the_simulator(sims: Any, tmp_path: Path) -> None:
    """The members run in a fresh interpreter configured like production (env only)."""
    script = textwrap.dedent("""
        import asyncio, json
        from providers.carbonmapper.stac import members
        from stac_bridge.member import SearchParams

        async def main():
            own, remote = members()
            out = {"own": [c["id"] for c in await own.collections()],
                   "remote": [c["id"] for c in await remote.collections()],
                   "sorts": remote.sorts_natively([])}
            params = SearchParams(collections=["carbonmapper:l4a-co2-mfal-v3a"], limit=5)
            first = await remote.search(params, None)
            second = await remote.search(params, first.next)
            out["pages"] = [[i["id"] for i in first.items], [i["id"] for i in second.items]]
            out["collection"] = first.items[0]["collection"]
            out["matched"] = first.matched
            item = await remote.get_item("carbonmapper:l4a-co2-mfal-v3a", first.items[0]["id"])
            out["item"] = item["id"]
            page = await own.search(SearchParams(collections=["carbonmapper-plumes"], limit=3), None)
            out["own_items"] = [i["id"] for i in page.items]
            out["roles"] = {}  # upstream scene (l2b) and plume (l3a) items: their PNG is a preview (issue 13 §6)
            for cid in ("l2b-ch4-mfa-v3a", "l3a-ime-ch4-mfa-v3a"):
                found = await remote.search(SearchParams(collections=["carbonmapper:" + cid], limit=1), None)
                out["roles"][cid] = {k: a["roles"] for k, a in found.items[0]["assets"].items()}
            print(json.dumps(out))

        asyncio.run(main())
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFED_")}
    env.update({"GEOFED_CARBONMAPPER_URL": sims.url("carbonmapper"), "GEOFED_DEMO": "0",
                "GEOFED_DATA_DIR": str(tmp_path)})
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["own"] == ["carbonmapper-plumes", "carbonmapper-sources", "carbonmapper-scenes"]
    assert "carbonmapper:l2b-ch4-mfa-v3a" in out["remote"]
    assert out["sorts"] is False  # the simulator's default: no sort extension advertised
    truth = sims.post("carbonmapper", "/api/v1/stac/search", json={"collections": ["l4a-co2-mfal-v3a"], "limit": 10})
    truth_ids = [f["id"] for f in truth.json()["features"]]
    assert out["pages"][0] + out["pages"][1] == truth_ids
    assert out["collection"] == "carbonmapper:l4a-co2-mfal-v3a" and out["item"] == truth_ids[0]
    assert out["matched"] == truth.json()["context"]["matched"]
    newest = sims.get("carbonmapper", PLUMES, params={"limit": 3}).json()["items"]
    assert out["own_items"] == [p["plume_id"] for p in newest]
    for cid, roles in out["roles"].items():
        upstream = sims.post("carbonmapper", "/api/v1/stac/search", json={"collections": [cid], "limit": 1})
        assets = upstream.json()["features"][0]["assets"]
        assert set(roles) == set(assets)
        for key, asset in assets.items():  # the upstream's roles kept; its PNG (only) also an `overview`
            png = asset["type"] == "image/png"
            assert roles[key] == asset["roles"] + (["overview"] if png else []), (cid, key)
        assert any("overview" in r for r in roles.values()), cid
