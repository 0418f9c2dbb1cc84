"""What an alert says and how it reaches MQTT: the notification message, pygeoapi's MQTT client, AsyncAPI.

- The notification (GeoJSON Feature, after the OGC API – Publish-Subscribe / WIS2 notification messages): the
  item's id and geometry, `properties.datetime` (the item's time), `properties.pubtime` (when the upstream
  published it; for scenes: when geofed first listed it), the item's own properties, and links to the OGC API
  feature (collections served as features) and the STAC item.
- The envelope: pygeoapi's CloudEvent (`generate_ogc_cloudevent`, type `org.ogc.api.collection.item.create`)
  whose `id` is the event's idempotency key, so a redelivered message can be recognised.
- The MQTT client is pygeoapi's (`pygeoapi.pubsub.mqtt.MQTTPubSubClient`, loaded through pygeoapi's plugin
  loader from the same `pubsub` definition the server advertises). pygeoapi's own `publish_message` reconnects
  per message and does not wait for the broker, so geofed keeps the client's connection open (paho's network
  loop) and waits for the QoS 1 acknowledgement: a message counts as delivered only when the broker has it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote

from geofed.query import instant, rfc3339

LOGGER = logging.getLogger(__name__)
EVENT_TYPE = "org.ogc.api.collection.item.create"
INFLIGHT = 1000  # QoS 1 messages in flight on the connection


def collection_channel(collection: str) -> str:
    """The MQTT topic of a collection's own notifications (pygeoapi's `collections/<id>`)."""
    return f"collections/{collection}"


def subscription_topic(sub_id: str) -> str:
    return f"subscriptions/{sub_id}"


def notification(collection: str, feature: dict[str, Any], time_field: str | None, pubtime: Any,
                 public_url: str, ogc: bool = True) -> dict[str, Any]:
    """`ogc`: the collection is served as OGC API features too (a STAC member's collection is STAC only)."""
    item_id = str(feature["id"])
    props = dict(feature.get("properties") or {})
    when = instant(props.get(time_field)) if time_field else None
    props.update({"collection": collection, "data_id": f"{collection}/{item_id}",
                  "datetime": rfc3339(when) if when else None, "pubtime": rfc3339(instant(pubtime))})
    quoted = quote(item_id, safe="")
    links = [{"rel": "item", "type": "application/geo+json", "title": "STAC item",
              "href": f"{public_url}/stac/collections/{quote(collection, safe=':')}/items/{quoted}"}]
    if ogc:
        links.insert(0, {"rel": "canonical", "type": "application/geo+json", "title": "OGC API feature",
                         "href": f"{public_url}/collections/{collection}/items/{quoted}"})
    return {"type": "Feature", "id": item_id, "geometry": feature.get("geometry"), "properties": props,
            "links": links}


def envelope(event_id: str, subject: str, data: dict[str, Any], public_url: str) -> str:
    """The delivered body: pygeoapi's OGC CloudEvent around the notification, `id` = the idempotency key."""
    from pygeoapi.api.pubsub import generate_ogc_cloudevent

    message = generate_ogc_cloudevent(EVENT_TYPE, "application/geo+json", public_url, subject, data)
    message["id"] = event_id
    return json.dumps(message, separators=(",", ":"), default=str)


class DeliveryFailed(Exception):
    pass


class Publisher:
    """One open MQTT connection per server through pygeoapi's client; `publish` waits for the broker's ack."""

    def __init__(self, broker_url: str, owner: str) -> None:
        from pygeoapi.plugin import load_plugin

        self.client = load_plugin("pubsub", {"name": "MQTT", "broker": {"url": broker_url}})
        # pygeoapi picks `pygeoapi-pubsub-<0..1000>`: two replicas could share it and take each other's session
        self.client.conn._client_id = f"geofed-{owner}-{uuid.uuid4().hex[:8]}".encode()
        self._lock = threading.Lock()
        self._started = False

    def _ensure(self) -> None:
        with self._lock:
            if not self._started:
                # a batch is written at once; paho's default window (20 unacknowledged) would serialise it
                self.client.conn.max_inflight_messages_set(INFLIGHT)
                self.client.connect()  # PubSubClientConnectionError when the broker is away: retried later
                self.client.conn.loop_start()  # from now on paho reconnects by itself
                self._started = True

    def topic(self, channel: str) -> str:
        prefix = self.client.channel
        return f"{prefix}/{channel}" if prefix else channel

    def publish(self, channel: str, payload: str, timeout: float = 10.0) -> None:
        """Blocking (run it in a thread); raises DeliveryFailed unless the broker acknowledged the message."""
        [failure] = self.publish_many([(channel, payload)], timeout)
        if failure is not None:
            raise DeliveryFailed(failure)

    def publish_many(self, messages: list[tuple[str, str]], timeout: float = 10.0) -> list[str | None]:
        """Blocking (run it in a thread): writes every message (QoS 1) to the open connection, then awaits the
        broker's acknowledgements together. One entry per message: None when acknowledged, else why not."""
        broker = f"MQTT broker {self.client.broker_safe_url}"
        try:
            self._ensure()
        except Exception as exc:  # noqa: BLE001 - paho raises RuntimeError/ValueError/OSError alike
            return [f"{broker}: {exc}"] * len(messages)
        sent: list[Any] = []
        for channel, payload in messages:
            try:
                sent.append(self.client.conn.publish(self.topic(channel), payload, qos=1))
            except Exception as exc:  # noqa: BLE001
                sent.append(f"{broker}: {exc}")
        deadline = time.monotonic() + timeout
        out: list[str | None] = []
        for info in sent:
            if isinstance(info, str):
                out.append(info)
                continue
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - not queued (no connection) or the wait failed
                out.append(f"{broker}: {exc}")
                continue
            out.append(None if info.is_published() else f"{broker} did not acknowledge in {timeout:.0f} s")
        return out

    def close(self) -> None:
        with self._lock:
            if self._started:
                self.client.conn.loop_stop()
                self.client.conn.disconnect()
                self._started = False


def asyncapi(config: dict[str, Any]) -> dict[str, Any]:
    """pygeoapi's AsyncAPI document for `config`, with two fixes: contact fields pygeoapi requires but geofed
    leaves out when unset are filled for the generator and dropped again, and channel addresses lose the
    leading `/` pygeoapi adds when no channel prefix is set (messages are published without it)."""
    from pygeoapi.asyncapi import get_asyncapi

    meta = config["metadata"]
    contact = {"name": "", "email": "", "url": "", **meta.get("contact", {})}
    doc = get_asyncapi({**config, "metadata": {**meta, "contact": contact}})
    doc["info"]["contact"] = {k: v for k, v in doc["info"]["contact"].items() if v}
    for channel in doc.get("channels", {}).values():
        channel["address"] = channel["address"].lstrip("/")
    return doc
