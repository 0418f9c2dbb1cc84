"""An example upstream added through the registry only (entry point `geofed.upstreams`): methane stations."""

from example_upstream import client, features, stac
from geofed.registry import Upstream

UPSTREAM = Upstream(name="stations", title=client.TITLE, make_auth=client.make_auth,
                    features=(features.StationProvider,), members=stac.members)
