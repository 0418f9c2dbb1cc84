"""SpaceKnow: scenes (Ragnar imagery search) as a collection, credits check and Kraken analysis as processes."""

from geofed.registry import Upstream
from providers.spaceknow import client, stac
from providers.spaceknow.client import TITLE
from providers.spaceknow.features import SceneProvider
from providers.spaceknow.processes import AnalysisProcessor, CheckAreaProcessor

UPSTREAM = Upstream(
    name="spaceknow",
    title=TITLE,
    make_auth=client.make_auth,
    real_url="https://api.spaceknow.com",
    features=(SceneProvider,),
    processes=(CheckAreaProcessor, AnalysisProcessor),
    members=stac.members,
    aux_settings=("auth_url",),
)
