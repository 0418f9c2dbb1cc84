"""pygeoapi feature provider of `epoch-plots` (its resource is rendered from `PlotSource.collection`)."""

from __future__ import annotations

from geofed.ogc.provider import UpstreamFeatureProvider
from providers.epoch.sources import PlotSource


class PlotsProvider(UpstreamFeatureProvider):
    source_class = PlotSource
