"""SpaceKnow-specific deployment settings (`GEOFED_SPACEKNOW_*`), next to the shared ones in `geofed.settings`.

The scraped doc lost most paths and leaves pipeline timing and terminal statuses unspecified: everything that is a
choice (see `../shared/upstreams/spaceknow.md`) can be changed here without a code change.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PATHS: dict[str, str] = {
    "get_status": "/tasking/get-status",
    "list_datasets": "/imagery/list-datasets",
    "search_initiate": "/imagery/search/initiate",
    "search_retrieve": "/imagery/search/retrieve",
    "get_metadata": "/imagery/get-metadata",
    "check_area": "/credits/check-area",
    "dry_run_initiate": "/kraken/dry-run/initiate",
    "dry_run_retrieve": "/kraken/dry-run/retrieve",
    "release_initiate": "/kraken/release/initiate",
    "release_retrieve": "/kraken/release/retrieve",
    "list_map_types": "/kraken/list-map-types",
    # the tile download's path is UNSPEC in the doc; its path parameters are the doc's (signed_map_id = the mapId a
    # release returns, request_geometry_id = its subGeometryId, "-" for none)
    "grid_file": "/kraken/grid/{signed_map_id}/{request_geometry_id}/{zoom}/{x}/{y}/{file_name}",
}


class SpaceKnowOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOFED_SPACEKNOW_", extra="ignore", case_sensitive=False)

    auth_client_id: str = Field("hmWJcfhRouDOaJK2L8asREMlMrv3jFE1", description="Auth0 client id the doc prints")
    token_ttl: float = Field(36000.0, description="token lifetime when the id_token carries no `exp` (doc: 10 h)")
    pipeline_deadline: float = Field(300.0, description="longest wait for one pipeline to resolve, seconds")
    poll_min: float = Field(0.2, description="shortest wait between status polls, seconds")
    poll_max: float = Field(30.0, description="longest wait between status polls, whatever nextTry says")
    status_resolved: str = "RESOLVED"
    status_failed: str = "FAILED"
    search_cache_ttl: float = Field(600.0, description="seconds a finished search stays cached for paging")
    search_max_scenes: int = Field(5000, description="scenes one search may collect by following cursors")
    search_concurrency: int = Field(4, description="windows searched at the same time")
    # The doc is silent on how the search answer says "more": geofed reads `cursor` beside `results` (where the
    # doc's other paged answers put it). A page without one that is as full as the earlier pages of the same search
    # may have lost it: "probe" asks for the next offset when the cursors so far were offsets (else it fails, 502),
    # "error" fails (502), "end" trusts the answer.
    search_lost_cursor: Literal["probe", "error", "end"] = "probe"
    # The doc gives no input count per map type ("single input map types require 1"; pairs for change, n-wise
    # groups): these take a pair of scenes, every other map type one scene per map.
    pairwise_map_types: list[str] = Field(default_factory=lambda: ["change"])
    map_types_ttl: float = Field(3600.0, description="seconds the map-type listing (grid files) is kept")
    grid_max_redirects: int = Field(3, description="redirects a grid download may follow (to storage)")
    paths: dict[str, str] = Field(default_factory=dict, description="overrides of DEFAULT_PATHS (JSON)")

    def path(self, name: str) -> str:
        return self.paths.get(name, DEFAULT_PATHS[name])


@lru_cache(maxsize=1)
def get_options() -> SpaceKnowOptions:
    return SpaceKnowOptions()
