"""The pygeoapi providers of the three CarbonMapper collections (declared in `sources.py`)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.carbonmapper.sources import PlumeSource, SceneSource, SourceSource


class PlumeProvider(UpstreamFeatureProvider):
    source_class = PlumeSource


class SourceProvider(UpstreamFeatureProvider):
    source_class = SourceSource


class SceneProvider(UpstreamFeatureProvider):
    source_class = SceneSource
