"""Epoch's face in the STAC federation: `epoch-plots`, over the same source (and options) as the OGC collection."""

from __future__ import annotations

from providers.epoch.sources import PlotSource
from stac_bridge.member import Member, SourceMember


def members() -> list[Member]:
    return [SourceMember("epoch", [PlotSource(**PlotSource.collection.options)])]
