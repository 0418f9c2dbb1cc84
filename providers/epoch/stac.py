"""Epoch's face in the STAC federation: `epoch-plots`, over the same source (and options) as the OGC collection."""

from __future__ import annotations

from typing import Any

import yaml

from geofed.pygeoapi_config import CONFIG_DIR
from providers.epoch import records
from providers.epoch.source import PlotSource
from stac_bridge.member import Member, SourceMember


def _plot_options() -> dict[str, Any]:
    """The collection's options from its pygeoapi resource, so both faces push down and page the same way."""
    resources = yaml.safe_load((CONFIG_DIR / "resources" / "epoch.yml").read_text()) or {}
    for provider in (resources.get(records.COLLECTION_ID) or {}).get("providers", []):
        if provider.get("type") == "feature":
            return dict(provider.get("options") or {})
    return {}


def members() -> list[Member]:
    return [SourceMember("epoch", [PlotSource(**_plot_options())])]
