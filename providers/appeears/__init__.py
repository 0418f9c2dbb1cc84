"""NASA AppEEARS: area/point extractions as an async OGC API process, products as STAC collections."""

from geofed.registry import Upstream
from providers.appeears import client, stac
from providers.appeears.processes import AppeearsExtractProcessor

UPSTREAM = Upstream(
    name=client.NAME,
    title=client.TITLE,
    make_auth=client.make_auth,
    real_url="https://appeears.earthdatacloud.nasa.gov/api",
    processes=(AppeearsExtractProcessor,),
    members=stac.members,
)
