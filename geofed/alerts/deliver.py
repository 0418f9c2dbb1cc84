"""The outbox's courier: delivers pending events at least once, with backoff and a dead-letter state.

Every replica runs one. Each round it leases a batch of due events (one replica per event: `claim_due`, one
statement), sends them — MQTT through `Publisher.publish_many` (QoS 1: the whole batch is written to the open
connection, then the broker's acknowledgements are awaited together), webhooks signed and concurrently (a
bounded pool of kept-alive connections; the allow-list checked once per URL and batch) — and settles the whole
batch in one transaction: `delivered`, or back to `pending` with `next_try` = now + base × 2^(attempts-1) (at
most an hour), or `dead` after `GEOFED_ALERT_MAX_ATTEMPTS` attempts (listed on `/subscriptions/{id}`). The
watcher wakes the courier of its replica when it has enqueued events, so a poll's alerts leave at once. A
replica that dies mid-send leaves leases that expire; those events are sent again with the same idempotency key.
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
BATCH = 500
WEBHOOK_CONCURRENCY = 64  # webhook requests in flight per replica (and kept-alive connections)
MAX_BACKOFF = 3600.0
MQTT_TARGETS = ("mqtt", "collection")


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
        self.wake = asyncio.Event()  # set by the watcher when it has enqueued events
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False,
            limits=httpx.Limits(max_connections=WEBHOOK_CONCURRENCY, max_keepalive_connections=WEBHOOK_CONCURRENCY,
                                keepalive_expiry=settings.http_keepalive))
        self._secrets: dict[str, str | None] = {}

    async def run(self) -> None:
        await asyncio.to_thread(self.store.release_events, self.owner)  # a restart resumes its own sends at once
        while True:
            self.wake.clear()
            try:
                claimed = await asyncio.to_thread(self.store.claim_due, self.owner, time.time(), LEASE_SECONDS,
                                                  BATCH)
                if claimed:
                    outcomes = await self.deliver(claimed)
                    await asyncio.to_thread(self.store.settle, self.owner, outcomes)  # one write per batch
                    continue  # more may be due: no sleep
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGGER.exception("alerts courier: store unavailable")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.tick)

    async def close(self) -> None:
        await self.http.aclose()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.release_events, self.owner)

    async def deliver(self, events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
        """One attempt at each event of a batch; the outcomes to settle, in the events' order."""
        failures: dict[str, Exception | None] = {}
        mqtt = [e for e in events if e.target in MQTT_TARGETS]
        gate = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        checks: dict[str, asyncio.Future[None]] = {}

        async def hook(event: Event) -> None:
            async with gate:
                failures[event.id] = await _attempt(self._webhook(event, checks))

        async def other(event: Event) -> None:
            failures[event.id] = DeliveryFailed(f"unknown delivery target {event.target!r}")

        await asyncio.gather(self._publish(mqtt, failures),
                             *(hook(e) if e.target == "webhook" and e.address else other(e)
                               for e in events if e.target not in MQTT_TARGETS))
        return [self._outcome(e, failures.get(e.id)) for e in events]

    def _outcome(self, event: Event, failure: Exception | None) -> tuple[str, dict[str, Any]]:
        attempts = event.attempts + 1
        if failure is None:
            return event.id, {"attempts": attempts, "status": "delivered", "delivered": time.time(),
                              "last_error": None, "next_try": event.next_try}
        detail = failure.message if isinstance(failure, errors.GeofedError) else str(failure) or type(failure).__name__
        dead = attempts >= self.max_attempts
        wait = min(MAX_BACKOFF, self.base * 2 ** (attempts - 1))
        LOGGER.info("alerts: event %s attempt %d failed (%s)%s", event.id, attempts, detail,
                    "; dead-lettered" if dead else f"; retry in {wait:.1f} s")
        return event.id, {"attempts": attempts, "last_error": detail[:500], "status": "dead" if dead else "pending",
                          "next_try": time.time() + wait, "delivered": None}

    async def _publish(self, events: list[Event], failures: dict[str, Exception | None]) -> None:
        if not events:
            return
        if self.publisher is None:
            failures.update(dict.fromkeys([e.id for e in events],
                                          DeliveryFailed("no MQTT broker is configured (GEOFED_PUBSUB_URL)")))
            return
        results = await asyncio.to_thread(self.publisher.publish_many,
                                          [(str(e.address), e.message) for e in events])
        failures.update({e.id: None if r is None else DeliveryFailed(r) for e, r in zip(events, results, strict=True)})

    async def _webhook(self, event: Event, checks: dict[str, asyncio.Future[None]]) -> None:
        secret = await self._secret(event.subscription)
        if secret is None:
            raise DeliveryFailed("the subscription is gone")
        url = str(event.address)
        if url not in checks:  # again: DNS may have changed since the subscription was made (once per batch)
            checks[url] = asyncio.ensure_future(self.allow.check(url))
        await asyncio.shield(checks[url])
        await webhook.post(self.http, url, event.message, secret, event.id)

    async def _secret(self, sub_id: str) -> str | None:
        if sub_id not in self._secrets:
            sub = await asyncio.to_thread(self.store.subscription, sub_id)
            if sub is None:
                return None
            self._secrets[sub_id] = sub.get("secret")
        return self._secrets[sub_id]


async def _attempt(send: Any) -> Exception | None:
    """Awaits one send: None when it succeeded, the failure otherwise (every failure is a retry)."""
    try:
        await send
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is a retry (or the dead letter)
        return exc
    return None
