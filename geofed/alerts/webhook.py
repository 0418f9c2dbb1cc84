"""Webhook delivery: the allow-list (no server-side request forgery) and the HMAC-SHA256 signature.

`GEOFED_WEBHOOK_ALLOW` lists the hosts webhooks may name: exact host names, `*.suffix` wildcards, IP addresses
and CIDR ranges; with it unset, webhooks are refused. Every address a host resolves to must be public unless an
IP/CIDR entry covers it or the host is listed by its exact name — a wildcard never admits a private, loopback or
link-local address (DNS rebinding). The check runs when a subscription is created and again before every
delivery; redirects are not followed.

A receiver verifies `X-Geofed-Signature: sha256=<hex>` = HMAC-SHA256(secret, raw body) and de-duplicates on
`Idempotency-Key` (the event id; the same on every retry of one event).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from geofed import errors

SIGNATURE_HEADER = "X-Geofed-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Geofed-Event"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature)


class AllowList:
    def __init__(self, raw: str | None) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (e.strip().lower() for e in (raw or "").split(",")):
            if not entry:
                continue
            if entry.startswith("*."):
                self.suffixes.append(entry[1:])
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))

    @property
    def enabled(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def _covered(self, address: Address) -> bool:
        return any(address in net for net in self.networks)

    def host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        try:
            return self._covered(ipaddress.ip_address(host))
        except ValueError:
            return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def address_ok(self, host: str, address: Address) -> bool:
        if address.is_global and not address.is_multicast:
            return True
        return self._covered(address) or host.lower().rstrip(".") in self.names

    async def check(self, url: str, parameter: str = "delivery.url") -> None:
        """Raises InvalidParameter unless `url` is an http(s) URL this server may call."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidParameter("a webhook URL must be an absolute http or https URL",
                                          parameter=parameter)
        if parts.username or parts.password:
            raise errors.InvalidParameter("a webhook URL must not carry credentials", parameter=parameter)
        host = parts.hostname
        if not self.enabled:
            raise errors.InvalidParameter("webhooks are off on this server (GEOFED_WEBHOOK_ALLOW is not set)",
                                          parameter=parameter)
        if not self.host_listed(host):
            raise errors.InvalidParameter(f"webhook host {host} is not in this server's allow-list",
                                          parameter=parameter)
        for address in await resolve(host, parts.port or (443 if parts.scheme == "https" else 80)):
            if not self.address_ok(host, address):
                raise errors.InvalidParameter(
                    f"webhook host {host} resolves to a non-public address, which the allow-list does not admit",
                    parameter=parameter)


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise errors.InvalidParameter(f"webhook host {host} does not resolve", parameter="delivery.url") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def post(http: httpx.AsyncClient, url: str, body: str, secret: str, event_id: str) -> None:
    """One delivery attempt; raises httpx.HTTPError or RuntimeError (non-2xx) on failure."""
    raw = body.encode()
    headers = {"Content-Type": "application/cloudevents+json", SIGNATURE_HEADER: sign(secret, raw),
               IDEMPOTENCY_HEADER: event_id, EVENT_HEADER: event_id}
    response = await http.post(url, content=raw, headers=headers)
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"the receiver answered {response.status_code}")
