"""The inventory's numbers, computed from the features the sources answered (pure functions, no I/O).

Plumes (CarbonMapper, `emission_auto` and `emission_uncertainty_auto` in kg/h): per gas, and per gas and sector,
`count` (plumes), `emission_count` (plumes with an emission rate; CarbonMapper hides some), `sum_kgh`, `mean_kgh`
and the combined uncertainty of that sum and mean, the uncertainties taken as independent standard deviations:
`sum_uncertainty_kgh` = √Σσ², `mean_uncertainty_kgh` = √Σσ² / emission_count (a plume without σ adds 0).

Epoch plots (tCO2e/yr): the sums of `luc_tco2eyear`, `biogenic_tco2eyear`, `soc_tco2eyear` and
`removal_tco2eyear`, and `net_tco2eyear` = −luc + biogenic + soc − removal, i.e. what the plots emit net
(Epoch's signs: a negative LUC value is a carbon loss, i.e. an emission; a positive removal is sequestration).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from geofed.query import instant, rfc3339
from geofed.settings import get_settings
from providers.inventory.inputs import Inputs

PLOT_STATS = ("luc_tco2eyear", "biogenic_tco2eyear", "soc_tco2eyear", "removal_tco2eyear")
LARGEST = 10


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def item_url(collection: str, identifier: str) -> str:
    return f"{get_settings().public_url}/collections/{collection}/items/{identifier}"


@dataclass
class Emissions:
    count: int = 0
    emission_count: int = 0
    total: float = 0.0
    variance: float = 0.0

    def add(self, emission: float | None, sigma: float | None) -> None:
        self.count += 1
        if emission is not None:
            self.emission_count += 1
            self.total += emission
            self.variance += (sigma or 0.0) ** 2

    def as_dict(self) -> dict[str, Any]:
        spread = math.sqrt(self.variance)
        n = self.emission_count
        return {"count": self.count, "emission_count": n, "sum_kgh": self.total,
                "mean_kgh": self.total / n if n else None, "sum_uncertainty_kgh": spread,
                "mean_uncertainty_kgh": spread / n if n else None}


def plumes(features: list[dict[str, Any]]) -> dict[str, Any]:
    by_gas: dict[str, Emissions] = {}
    by_sector: dict[str, dict[str, Emissions]] = {}
    for feature in features:
        props = feature["properties"]
        gas, sector = str(props.get("gas") or "unknown"), str(props.get("sector") or "unknown")
        emission, sigma = _number(props.get("emission_auto")), _number(props.get("emission_uncertainty_auto"))
        by_gas.setdefault(gas, Emissions()).add(emission, sigma)
        by_sector.setdefault(gas, {}).setdefault(sector, Emissions()).add(emission, sigma)
    ranked = sorted((f for f in features if _number(f["properties"].get("emission_auto")) is not None),
                    key=lambda f: (-float(f["properties"]["emission_auto"]), str(f["id"])))
    largest = [{"id": f["id"], "gas": f["properties"].get("gas"), "sector": f["properties"].get("sector"),
                "emission_auto": f["properties"]["emission_auto"],
                "emission_uncertainty_auto": f["properties"].get("emission_uncertainty_auto"),
                "datetime": f["properties"].get("scene_timestamp"), "geometry": f.get("geometry"),
                "href": item_url("carbonmapper-plumes", str(f["id"]))} for f in ranked[:LARGEST]]
    return {"count": len(features),
            "by_gas": {gas: {**stats.as_dict(),
                             "by_sector": {s: e.as_dict() for s, e in sorted(by_sector[gas].items())}}
                       for gas, stats in sorted(by_gas.items())},
            "largest": largest}


def sources(features: list[dict[str, Any]]) -> dict[str, Any]:
    listed = [{"id": f["id"], "gas": f["properties"].get("gas"), "sector": f["properties"].get("sector"),
               "persistence": f["properties"].get("persistence"),
               "emission_auto": f["properties"].get("emission_auto"),
               "plume_count": f["properties"].get("plume_count"), "geometry": f.get("geometry"),
               "href": item_url("carbonmapper-sources", str(f["id"]))} for f in features]
    listed.sort(key=lambda s: (-(_number(s["emission_auto"]) or 0.0), str(s["id"])))
    return {"count": len(listed), "items": listed}


def _plot_sums(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    count, area = 0, 0.0
    sums = dict.fromkeys(PLOT_STATS, 0.0)
    for feature in features:
        props = feature["properties"]
        count += 1
        area += _number(props.get("area")) or 0.0
        for name in PLOT_STATS:
            sums[name] += _number(props.get(name)) or 0.0
    net = (-sums["luc_tco2eyear"] + sums["biogenic_tco2eyear"] + sums["soc_tco2eyear"]
           - sums["removal_tco2eyear"])
    return {"count": count, "area_ha": area, **sums, "net_tco2eyear": net}


def plots(by_collection: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    every = [f for found in by_collection.values() for f in found]
    return {**_plot_sums(every), "collections": {n: _plot_sums(found) for n, found in by_collection.items()}}


def sentinel(scenes: list[dict[str, Any]], cloud_cover_max: float, collection: str) -> dict[str, Any]:
    clear_dates: set[str] = set()
    clear = 0
    for scene in scenes:
        props = scene.get("properties") or {}
        cloud = _number(props.get("eo:cloud_cover"))
        when = instant(props.get("datetime"))
        if cloud is not None and cloud <= cloud_cover_max:
            clear += 1
            if when is not None:
                clear_dates.add(when.date().isoformat())
    return {"collection": collection, "count": len(scenes), "cloud_cover_max": cloud_cover_max,
            "clear_count": clear, "clear_dates": sorted(clear_dates)}


def spaceknow(features: list[dict[str, Any]], searched: list[tuple[str, str]]) -> dict[str, Any]:
    by_dataset: dict[str, dict[str, Any]] = {f"{p}/{d}": {"provider": p, "dataset": d, "count": 0, "first": None,
                                                          "last": None} for p, d in searched}
    for feature in features:
        props = feature["properties"]
        key = f"{props.get('provider')}/{props.get('dataset')}"
        entry = by_dataset.setdefault(key, {"provider": props.get("provider"), "dataset": props.get("dataset"),
                                            "count": 0, "first": None, "last": None})
        entry["count"] += 1
        when = rfc3339(instant(props.get("datetime")))
        if when is not None:
            entry["first"] = min(entry["first"] or when, when)
            entry["last"] = max(entry["last"] or when, when)
    return {"count": len(features), "by_dataset": dict(sorted(by_dataset.items()))}


def feature_count(body: dict[str, Any]) -> int:
    return sum(int((body.get(name) or {}).get("count") or 0) for name in ("plumes", "sources", "plots"))


def document(inputs: Inputs, body: dict[str, Any], statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    failed = sorted(b["title"] for b in statuses.values() if b["status"] in ("failed", "partial"))
    return {
        "area": {"km2": inputs.area_km2, "bbox": list(inputs.bbox), "geometry": inputs.geometry},
        "datetime": f"{inputs.start}/{inputs.end}",
        "gases": list(inputs.gases),
        "epoch_collections": list(inputs.epoch_collections),
        "cloud_cover_max": inputs.cloud_cover_max,
        "partial": bool(failed),
        "failed": failed,
        "upstreams": statuses,
        **body,
    }
