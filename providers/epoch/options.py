"""Epoch-specific deployment settings (`GEOFED_EPOCH_*`), next to the shared ones (URL, token) in `geofed.settings`.

The doc is silent on how many plots one `aggregate=true` call may cover: it only says `limit` "defaults to 1
(returns first matching case)" there. geofed sends an explicit `limit` (`aggregate_limit`) and refuses an answer
that reaches it (it would be partial); deployments whose Epoch caps `limit` lower can say so here.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EpochOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOFED_EPOCH_", extra="ignore", case_sensitive=False)

    aggregate_limit: int = Field(1_000_000, ge=1, description="`limit` of an aggregate call: most plots it covers")


@lru_cache(maxsize=1)
def get_options() -> EpochOptions:
    return EpochOptions()
