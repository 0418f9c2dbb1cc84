"""Emissions inventory: an OGC API process joining CarbonMapper, Epoch, Sentinel Hub and SpaceKnow for an area.

A local service of geofed (`local=True`): it has no upstream of its own and reads the others through their
sources and clients, so it is enabled whenever geofed runs.
"""

from geofed.registry import Upstream
from providers.inventory import client, stac
from providers.inventory.processes import InventoryProcessor

UPSTREAM = Upstream(
    name=client.NAME,
    title=client.TITLE,
    make_auth=None,
    processes=(InventoryProcessor,),
    members=stac.members,
    local=True,
)
