"""CarbonMapper: plumes, sources and scenes (OGC API Features) and the CarbonMapper STAC API (federation)."""

from geofed.registry import Upstream
from providers.carbonmapper import client, features, stac

UPSTREAM = Upstream(
    name=client.NAME, title=client.TITLE, make_auth=client.make_auth, real_url="https://api.carbonmapper.org",
    policy=client.POLICY, members=stac.members,
    features=(features.PlumeProvider, features.SourceProvider, features.SceneProvider),
)
