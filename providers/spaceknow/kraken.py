"""Kraken planning: which map types the account may run (and their grid files), how scenes group per map type, and
the dry-run body that follows from those groups.

The doc: a dry run's "Scene list can contain single scene_id for single algorithms or multiple scenes for change
or n-wise algorithms"; a release's "single input map types require 1". So single-input map types (imagery,
aircraft, ships, cars, wrunc, ...) get one group, and one release, per scene; pairwise ones (`change`: the setting
`GEOFED_SPACEKNOW_PAIRWISE_MAP_TYPES`, the doc gives no input count per map type) one per pair of consecutive
scenes in the order given (older first). N-wise map types are not offered.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from geofed import errors
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient

# The map-type listing, kept `map_types_ttl` seconds (module level: processors are built per request).
_listing: dict[str, Any] = {}


@dataclass(frozen=True)
class Release:
    map_types: tuple[str, ...]
    scene_ids: tuple[str, ...]


async def map_types(client: SpaceKnowClient) -> dict[str, dict[str, Any]]:
    """mapType → its entry of SpaceKnow's list-map-types (only the map types the account may run)."""
    if _listing.get("expires", 0.0) < time.monotonic():
        answer = await client.list_map_types()
        if not isinstance(answer, list):
            raise errors.UpstreamError(f"{TITLE} list-map-types did not answer a list", upstream=NAME)
        _listing.update(value={str(m["mapType"]): m for m in answer if isinstance(m, dict) and m.get("mapType")},
                        expires=time.monotonic() + client.options.map_types_ttl)
    value: dict[str, dict[str, Any]] = _listing["value"]
    return value


def grid_files(entry: dict[str, Any]) -> list[str]:
    """Every grid file a map type produces: the listing's `gridFiles` ({format: [file names]})."""
    files = entry.get("gridFiles") if isinstance(entry.get("gridFiles"), dict) else {}
    return sorted({str(f) for names in files.values() if isinstance(names, list) for f in names})


def check_map_types(value: Any, known: dict[str, dict[str, Any]]) -> list[str]:
    """`mapTypes` against the listing: a 400 naming the unknown ones and the valid ones."""
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise errors.InvalidParameter("'mapTypes' must be a non-empty list of map type names, e.g. "
                                      "[\"aircraft\"]; valid: " + ", ".join(sorted(known)), parameter="mapTypes")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise errors.InvalidParameter(
            f"'mapTypes': {', '.join(unknown)} is not a map type this {TITLE} account may run; valid (SpaceKnow's "
            f"list-map-types): {', '.join(sorted(known))}",
            parameter="mapTypes",
        )
    return list(dict.fromkeys(value))


def plan(map_types: list[str], scene_ids: list[str], pairwise: set[str]) -> list[Release]:
    """One release per scene for the single-input map types, one per consecutive pair for the pairwise ones."""
    if len(set(scene_ids)) != len(scene_ids):
        raise errors.InvalidParameter("'sceneIds' lists a scene more than once", parameter="sceneIds")
    singles = tuple(m for m in map_types if m not in pairwise)
    pairs = tuple(m for m in map_types if m in pairwise)
    releases = [Release(singles, (scene,)) for scene in scene_ids] if singles else []
    if pairs:
        if len(scene_ids) < 2:
            raise errors.InvalidParameter(
                f"'mapTypes' {', '.join(pairs)} compare two scenes: give at least two 'sceneIds' (older first; "
                "each consecutive pair is one map)", parameter="sceneIds")
        releases += [Release(pairs, pair) for pair in itertools.pairwise(scene_ids)]
    return releases


def dry_runs(releases: list[Release]) -> list[dict[str, Any]]:
    """The dry run's `dryRuns`: one entry per set of map types, holding its scene groups (the doc's example)."""
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for release in releases:
        groups.setdefault(release.map_types, []).append(list(release.scene_ids))
    return [{"mapTypes": list(kinds), "scenes": scenes} for kinds, scenes in groups.items()]
