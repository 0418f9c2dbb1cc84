"""pygeoapi feature provider of `spaceknow-scenes` (its resource is rendered from `SceneSource.collection`)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.spaceknow.sources import SceneSource


class SceneProvider(UpstreamFeatureProvider):
    source_class = SceneSource
