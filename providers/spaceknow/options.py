"""SpaceKnow-specific deployment settings (`GEOFED_SPACEKNOW_*`), next to the shared ones in `geofed.settings`.

The scraped doc lost most paths and leaves pipeline timing and terminal statuses unspecified: everything that is a
choice (see `../shared/upstreams/spaceknow.md`) can be changed here without a code change.
"""

from __future__ import annotations

from functools import lru_cache

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
    # the tile download's path is UNSPEC in the doc; this is the public Kraken grid URL layout
    "grid_file": "/kraken/grid/{map_id}/{geometry_id}/{zoom}/{x}/{y}/{file_name}",
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
    paths: dict[str, str] = Field(default_factory=dict, description="overrides of DEFAULT_PATHS (JSON)")

    def path(self, name: str) -> str:
        return self.paths.get(name, DEFAULT_PATHS[name])


@lru_cache(maxsize=1)
def get_options() -> SpaceKnowOptions:
    return SpaceKnowOptions()
