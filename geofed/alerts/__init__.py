"""Alerts (issue 17): new items of watched collections pushed to subscribers.

`watch` (the leased poller, reading what `collections` declares: plumes by publication time, scenes over the
subscriptions' areas) → `store` (outbox and event log in the job store's database) → `deliver` (MQTT
through pygeoapi's pubsub client, signed webhooks, retries, dead letters); `web` mounts `/subscriptions*` and
`/alerts` and runs both loops in the root app's lifespan.
"""
