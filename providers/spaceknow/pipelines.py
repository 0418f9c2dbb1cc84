"""SpaceKnow pipelines: initiate → poll `get-status` waiting `nextTry` → retrieve, within an overall deadline.

Terminal status names are configurable (`GEOFED_SPACEKNOW_STATUS_RESOLVED` / `_FAILED`): the doc documents only
NEW and PROCESSING; RESOLVED and FAILED are what the real service was observed to send.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from geofed import errors
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient


@dataclass
class PipelineState:
    pipeline_id: str
    status: str
    next_try: float
    progress: dict[str, Any] | None = None


def _state(payload: Any, what: str) -> PipelineState:
    if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
        raise errors.UpstreamError(f"{TITLE} answered {what} without a pipeline status", upstream=NAME)
    try:
        next_try = float(payload.get("nextTry") or 0)
    except (TypeError, ValueError):
        next_try = 0.0
    return PipelineState(str(payload.get("pipelineId", "")), payload["status"], next_try, payload.get("progress"))


async def start(client: SpaceKnowClient, operation: str, body: dict[str, Any], idempotent: bool = True
                ) -> PipelineState:
    state = _state(await client.initiate(operation, body, idempotent=idempotent), f"{operation} initiate")
    if not state.pipeline_id:
        raise errors.UpstreamError(f"{TITLE} {label(operation)} initiate returned no pipelineId", upstream=NAME)
    return state


async def status(client: SpaceKnowClient, pipeline_id: str) -> PipelineState:
    state = _state(await client.get_status(pipeline_id), "get-status")
    state.pipeline_id = pipeline_id
    return state


def is_resolved(client: SpaceKnowClient, state: PipelineState) -> bool:
    return state.status == client.options.status_resolved


def is_failed(client: SpaceKnowClient, state: PipelineState) -> bool:
    return state.status == client.options.status_failed


def label(operation: str) -> str:
    return operation.replace("_", "-")  # dry_run → dry-run, as SpaceKnow names it


def failure(operation: str, pipeline_id: str) -> errors.UpstreamError:
    return errors.UpstreamError(f"{TITLE} {label(operation)} pipeline {pipeline_id} failed", upstream=NAME)


async def wait(client: SpaceKnowClient, state: PipelineState, operation: str, deadline: float | None = None
               ) -> PipelineState:
    """Polls until RESOLVED; FAILED → 502 and the deadline (monotonic) → 504, both naming the pipeline."""
    opts = client.options
    deadline = deadline if deadline is not None else time.monotonic() + opts.pipeline_deadline
    while not is_resolved(client, state):
        if is_failed(client, state):
            raise failure(operation, state.pipeline_id)
        pause = min(max(state.next_try, opts.poll_min), opts.poll_max)
        if time.monotonic() + pause > deadline:
            raise errors.UpstreamTimeout(
                f"{TITLE} {label(operation)} pipeline {state.pipeline_id} did not finish within "
                f"{opts.pipeline_deadline:.0f} s (last status {state.status})",
                upstream=NAME,
            )
        await asyncio.sleep(pause)
        state = await status(client, state.pipeline_id)
    return state


async def run(client: SpaceKnowClient, operation: str, body: dict[str, Any], idempotent: bool = True) -> Any:
    """One whole pipeline: its retrieve answer."""
    state = await wait(client, await start(client, operation, body, idempotent), operation)
    return await client.retrieve(operation, state.pipeline_id)
