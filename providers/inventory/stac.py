"""The emissions inventory contributes no STAC federation member: it is a process over other upstreams'
collections, with no collection of its own."""

from __future__ import annotations

from typing import Any


def members() -> list[Any]:
    return []
