"""SpaceKnow's face in the STAC federation: `spaceknow-scenes`, over the same source as the OGC collection."""

from __future__ import annotations

from typing import Any

import yaml

from geofed.pygeoapi_config import CONFIG_DIR
from providers.spaceknow.source import SceneSource
from stac_bridge.member import Member, SourceMember


def _scene_options() -> dict[str, Any]:
    """The collection's options from its pygeoapi resource, so both faces search the same datasets and areas."""
    resource = (yaml.safe_load((CONFIG_DIR / "resources" / "spaceknow.yml").read_text()) or {}).get(
        SceneSource.collection_id, {}
    )
    for provider in resource.get("providers", []):
        if provider.get("type") == "feature":
            return dict(provider.get("options") or {})
    return {}


def members() -> list[Member]:
    return [SourceMember("spaceknow", [SceneSource(**_scene_options())])]
