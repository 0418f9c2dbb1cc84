"""The pygeoapi providers of the three CarbonMapper collections (registered in config/resources/carbonmapper.yml)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.carbonmapper.plumes import PlumeSource
from providers.carbonmapper.scenes import SceneSource
from providers.carbonmapper.sources import SourceSource


class PlumeProvider(UpstreamFeatureProvider):
    source_class = PlumeSource


class SourceProvider(UpstreamFeatureProvider):
    source_class = SourceSource


class SceneProvider(UpstreamFeatureProvider):
    source_class = SceneSource
