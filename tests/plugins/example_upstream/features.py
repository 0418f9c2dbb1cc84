from example_upstream.sources import StationSource
from geofed.ogc.provider import UpstreamFeatureProvider


class StationProvider(UpstreamFeatureProvider):
    source_class = StationSource
