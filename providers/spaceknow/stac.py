"""SpaceKnow's face in the STAC federation: `spaceknow-scenes`, over the same source as the OGC collection."""

from __future__ import annotations

from providers.spaceknow.sources import SceneSource
from stac_bridge.member import Member, SourceMember


def members() -> list[Member]:
    return [SourceMember("spaceknow", [SceneSource()])]
