"""The outbox's courier: delivers pending events at least once, with backoff and a dead-letter state.

Every replica runs one. Each tick it leases due events (one replica per event), sends them — MQTT through
`Publisher` (QoS 1, acknowledged), webhooks signed, after the allow-list check — and settles each one:
`delivered`, or back to `pending` with `next_try` = now + base × 2^(attempts-1) (at most an hour), or `dead`
after `GEOFED_ALERT_MAX_ATTEMPTS` attempts (listed on `/subscriptions/{id}`). A replica that dies mid-send
leaves a lease that expires; the event is sent again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from geofed import errors
from geofed.alerts import webhook
from geofed.alerts.notify import DeliveryFailed, Publisher
from geofed.alerts.store import AlertStore, Event
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
LEASE_SECONDS = 60.0
BATCH = 64
MAX_BACKOFF = 3600.0


class Courier:
    def __init__(self, store: AlertStore, settings: Settings, owner: str, publisher: Publisher | None,
                 tick: float = 0.1) -> None:
        self.store = store
        self.owner = owner
        self.publisher = publisher
        self.allow = webhook.AllowList(settings.webhook_allow)
        self.max_attempts = max(1, int(settings.alert_max_attempts))
        self.base = max(0.0, float(settings.alert_retry_base))
        self.tick = tick
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        self._secrets: dict[str, str | None] = {}

    async def run(self) -> None:
        await asyncio.to_thread(self.store.release_events, self.owner)  # a restart resumes its own sends at once
        while True:
            try:
                claimed = await asyncio.to_thread(self.store.claim_due, self.owner, time.time(), LEASE_SECONDS,
                                                  BATCH)
                if claimed:
                    outcomes = await asyncio.gather(*(self._deliver(e) for e in claimed))
                    await asyncio.to_thread(self.store.settle, self.owner, outcomes)  # one write per batch
                    continue  # more may be due: no sleep
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGGER.exception("alerts courier: store unavailable")
            await asyncio.sleep(self.tick)

    async def close(self) -> None:
        await self.http.aclose()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.release_events, self.owner)

    async def _deliver(self, event: Event) -> tuple[str, dict[str, Any]]:
        attempts = event.attempts + 1
        try:
            await self._send(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a retry (or the dead letter)
            detail = exc.message if isinstance(exc, errors.GeofedError) else str(exc) or type(exc).__name__
            dead = attempts >= self.max_attempts
            wait = min(MAX_BACKOFF, self.base * 2 ** (attempts - 1))
            LOGGER.info("alerts: event %s attempt %d failed (%s)%s", event.id, attempts, detail,
                        "; dead-lettered" if dead else f"; retry in {wait:.1f} s")
            return event.id, {"attempts": attempts, "last_error": detail[:500], "status": "dead" if dead else
                              "pending", "next_try": time.time() + wait}
        return event.id, {"attempts": attempts, "status": "delivered", "delivered": time.time(), "last_error": None}

    async def _send(self, event: Event) -> None:
        if event.target in ("mqtt", "collection"):
            if self.publisher is None:
                raise DeliveryFailed("no MQTT broker is configured (GEOFED_PUBSUB_URL)")
            await asyncio.to_thread(self.publisher.publish, str(event.address), event.message)
            return
        if event.target != "webhook" or not event.address:
            raise DeliveryFailed(f"unknown delivery target {event.target!r}")
        secret = await self._secret(event.subscription)
        if secret is None:
            raise DeliveryFailed("the subscription is gone")
        await self.allow.check(event.address)  # again: DNS may have changed since the subscription was made
        await webhook.post(self.http, event.address, event.message, secret, event.id)

    async def _secret(self, sub_id: str) -> str | None:
        if sub_id not in self._secrets:
            sub = await asyncio.to_thread(self.store.subscription, sub_id)
            if sub is None:
                return None
            self._secrets[sub_id] = sub.get("secret")
        return self._secrets[sub_id]
