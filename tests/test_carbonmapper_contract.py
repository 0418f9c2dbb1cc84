"""CarbonMapper as its doc says it is (issue 14).

- `scenes/annotated` lists only scenes "eligible for null detection" (cloud cover <= 25 % unless the caller sets
  its own threshold, and assessed): the simulator applies it, and a plume's scene link still resolves — to what
  the plume record says about its scene — never 404.
- `sources.geojson` feature properties are not in the doc: a deployment without `timestamp_min/max` must not
  make datetime filters drop every source (the span then comes from the sources' plume names).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from geofed import upstreams
from geofed.http.loop import run_sync
from geofed.query import FeatureQuery, instant
from geofed.settings import get_settings
from providers.carbonmapper.sources import SourceSource
from simulators import DEMO_CREDENTIALS
from simulators.carbonmapper import create_app

SCENES = "/api/v1/catalog/scenes/annotated"


def _plumes(sims: Any, limit: int = 1000) -> list[dict[str, Any]]:
    return sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated", params={"limit": limit}).json()["items"]


def _listed(sims: Any, names: list[str], **params: Any) -> set[str]:
    answer = sims.get("carbonmapper", SCENES, params=[*(("names", n) for n in names), ("limit", 1000),
                                                      *params.items()])
    assert answer.status_code == 200, answer.text
    return {s["name"] for s in answer.json()["items"]}


def test_simulator_lists_only_scenes_eligible_for_null_detection(sims: Any) -> None:
    """Fails on the old simulator: it listed unassessed scenes."""
    names = sorted({p["plume_id"].rsplit("-", 1)[0] for p in _plumes(sims)})
    anything = _listed(sims, names, cloud_cover_pct_max=100)  # our own cloud threshold (doc)
    default = _listed(sims, names)  # the documented default: <= 25 % cloud and assessed
    assert default < anything < set(names)  # some plume scenes are never listed: not assessed


def test_a_plume_scene_missing_from_scenes_annotated_still_resolves(geofed: Any, sims: Any) -> None:
    """Fails on the old client: the scene link of a plume whose scene is not listed answered 404."""
    plumes = _plumes(sims)
    names = sorted({p["plume_id"].rsplit("-", 1)[0] for p in plumes})
    unlisted = sorted(set(names) - _listed(sims, names, cloud_cover_pct_max=100))
    assert unlisted
    plume = next(p for p in plumes if p["plume_id"].rsplit("-", 1)[0] == unlisted[0])
    feature = geofed.get(f"/collections/carbonmapper-plumes/items/{plume['plume_id']}", params={"f": "json"})
    assert feature.status_code == 200, feature.text
    (link,) = [lk for lk in feature.json()["links"] if "carbonmapper-scenes/items/" in lk["href"]]
    scene = httpx.get(link["href"], params={"f": "json"}, timeout=60)
    assert scene.status_code == 200, scene.text
    props = scene.json()["properties"]
    assert scene.json()["id"] == unlisted[0] and props["uuid"] == plume["scene_id"]
    assert props["instrument"] == plume["instrument"]
    assert instant(props["timestamp"]) == instant(plume["scene_timestamp"])
    item = geofed.get(f"/stac/collections/carbonmapper-scenes/items/{unlisted[0]}")
    assert item.status_code == 200, item.text
    assert instant(item.json()["properties"]["datetime"]) == instant(plume["scene_timestamp"])


@pytest.fixture
def sources_without_times(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process CarbonMapper simulator whose sources.geojson omits timestamp_min/max (older deployments)."""
    app = create_app(DEMO_CREDENTIALS["carbonmapper"], min_plumes=400, source_time_properties=False)
    upstreams.set_transport("carbonmapper", httpx.ASGITransport(app=app))
    monkeypatch.setenv("GEOFED_CARBONMAPPER_URL", "http://sim.test")
    monkeypatch.setenv("GEOFED_DEMO", "0")
    monkeypatch.setenv("GEOFED_CACHE_TTL", "0")
    get_settings.cache_clear()
    run_sync(upstreams.aclose_all())
    yield app
    upstreams.set_transport("carbonmapper", None)
    run_sync(upstreams.aclose_all())
    get_settings.cache_clear()


def _truth(app: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test") as c:
            return (await c.get("/api/v1/catalog/sources.geojson")).json()["features"]

    return asyncio.run(read())


def test_datetime_filters_keep_sources_when_the_deployment_omits_their_times(sources_without_times: Any) -> None:
    """Fails on the old client: with no timestamp_min/max every source was dropped by a datetime filter."""
    features = _truth(sources_without_times)
    assert features and not any("timestamp_min" in f["properties"] for f in features)
    start, end = dt.datetime(2023, 1, 1, tzinfo=dt.UTC), dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

    def span(f: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:  # from the plume names, as the doc defines
        days = sorted(dt.datetime.strptime(p.split("p")[0][3:], "%Y%m%dt%H%M%S").replace(tzinfo=dt.UTC)
                      for p in f["properties"]["plume_ids"])
        return days[0], days[-1]

    expected = {f["properties"]["source_name"] for f in features if span(f)[0] <= end and span(f)[1] >= start}
    assert expected and len(expected) < len(features)
    page = run_sync(SourceSource().query(FeatureQuery(limit=10_000, start=start, end=end)))
    assert {r["source_name"] for r in page.records} == expected
    assert all(r["timestamp_min"] <= r["timestamp_max"] for r in page.records)
    stac = run_sync(SourceSource().query(FeatureQuery(limit=10_000, start=start, end=end, face="stac")))
    assert stac.objects and all(o["properties"]["start_datetime"] for o in stac.objects)
