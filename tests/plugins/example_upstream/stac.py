from typing import Any

from example_upstream.sources import StationSource
from stac_bridge.member import SourceMember


def members() -> list[Any]:
    return [SourceMember("stations", [StationSource()])]
