"""pygeoapi feature provider of `epoch-plots` (registered in config/resources/epoch.yml)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.epoch.source import PlotSource


class PlotsProvider(UpstreamFeatureProvider):
    source_class = PlotSource
