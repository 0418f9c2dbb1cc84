"""pygeoapi feature provider of `spaceknow-scenes` (registered in config/resources/spaceknow.yml)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.spaceknow.source import SceneSource


class SceneProvider(UpstreamFeatureProvider):
    source_class = SceneSource
