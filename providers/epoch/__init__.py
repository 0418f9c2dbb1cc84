"""Epoch SCo2 API: plot-level biomass and land-use-change emissions (streamed NDJSON)."""

from geofed.registry import Upstream
from providers.epoch import client, stac
from providers.epoch.features import PlotsProvider
from providers.epoch.processes import AggregateEmissionsProcessor

UPSTREAM = Upstream(
    name="epoch",
    title=client.TITLE,
    make_auth=client.make_auth,
    real_url=client.REAL_URL,
    features=(PlotsProvider,),
    processes=(AggregateEmissionsProcessor,),
    members=stac.members,
)
