"""Sentinel Hub: the Catalog (STAC API) as a federation member and the Statistical API as a process."""

from geofed.registry import Upstream
from providers.sentinelhub import client, stac
from providers.sentinelhub.processes import StatisticsProcessor

UPSTREAM = Upstream(
    name=client.NAME,
    title=client.TITLE,
    make_auth=client.make_auth,
    real_url="https://services.sentinel-hub.com",
    policy=client.POLICY,
    processes=(StatisticsProcessor,),
    members=stac.members,
    aux_settings=("token_url",),
)
