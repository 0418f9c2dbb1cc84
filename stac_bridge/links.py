"""Every href the STAC API emits, built from `GEOFED_PUBLIC_URL` (path prefix included).

stac-fastapi derives links from the request, which under a mount and behind a proxy loses the public
prefix (stac-fastapi #767); geofed's OGC face builds its links from the public URL too, so both faces
agree on where the service lives.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from geofed import registry, upstreams

JSON = "application/json"
GEOJSON = "application/geo+json"
SCHEMA = "application/schema+json"
# Member links the bridge replaces with its own (they would point at the member's API or at nothing).
OWN_RELS = {"self", "root", "parent", "collection", "items", "next", "prev", "previous", "queryables", "child",
            "item", "search", "data", "conformance"}


# ':' is legal in a path segment (RFC 3986 pchar) and is how clients and validators write `sentinelhub:<id>`;
# escaping it made self links differ from the URLs requested (stac-api-validator: "self link does not match").
SEGMENT_SAFE = ":@"


def collection_path(collection_id: str) -> str:
    return f"collections/{quote(collection_id, safe=SEGMENT_SAFE)}"


class Links:
    def __init__(self, public_url: str) -> None:
        self.base = f"{public_url.rstrip('/')}/stac"
        self.public_url = public_url.rstrip("/")

    def url(self, path: str = "", query: dict[str, Any] | list[tuple[str, str]] | None = None) -> str:
        href = f"{self.base}/{path.lstrip('/')}" if path else f"{self.base}/"
        return f"{href}?{urlencode(query)}" if query else href

    def collection_url(self, collection_id: str) -> str:
        return self.url(collection_path(collection_id))

    def item_url(self, collection_id: str, item_id: str) -> str:
        return f"{self.collection_url(collection_id)}/items/{quote(item_id, safe=SEGMENT_SAFE)}"

    def root(self) -> dict[str, Any]:
        return {"rel": "root", "type": JSON, "href": self.url(), "title": "geofed STAC API"}

    def item(self, item: dict[str, Any]) -> dict[str, Any]:
        cid, iid = str(item.get("collection", "")), str(item.get("id", ""))
        kept = [ln for ln in item.get("links") or () if _external(ln)]
        item["links"] = [
            {"rel": "self", "type": GEOJSON, "href": self.item_url(cid, iid)},
            {"rel": "parent", "type": JSON, "href": self.collection_url(cid)},
            {"rel": "collection", "type": JSON, "href": self.collection_url(cid)},
            self.root(),
            *kept,
        ]
        return item

    def collection(self, collection: dict[str, Any], upstream: str, upstream_title: str) -> dict[str, Any]:
        cid = str(collection["id"])
        kept = [ln for ln in collection.get("links") or () if _external(ln)]
        if not any(ln.get("rel") == "via" for ln in kept):
            kept.append({"rel": "via", "type": JSON, "title": f"{upstream_title} (upstream)",
                         "href": _upstream_root(upstream)})
        collection["links"] = [
            {"rel": "self", "type": JSON, "href": self.collection_url(cid)},
            {"rel": "parent", "type": JSON, "href": self.url()},
            self.root(),
            {"rel": "items", "type": GEOJSON, "href": f"{self.collection_url(cid)}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": SCHEMA,
             "href": f"{self.collection_url(cid)}/queryables"},
            *kept,
        ]
        providers = list(collection.get("providers") or [])
        if not providers:
            providers.append({"name": upstream_title, "roles": ["producer", "licensor"],
                              "url": _real_url(upstream) or _upstream_root(upstream)})
        if not any("host" in (p.get("roles") or ()) for p in providers):
            providers.append({"name": "geofed", "roles": ["host"], "url": self.public_url})
        collection["providers"] = providers
        return collection


def _external(link: dict[str, Any]) -> bool:
    href = str(link.get("href", ""))
    return link.get("rel") not in OWN_RELS and href.startswith(("http://", "https://"))


def _upstream_root(upstream: str) -> str:
    try:
        return upstreams.base_url(upstream)
    except LookupError:
        return _real_url(upstream) or ""


def _real_url(upstream: str) -> str | None:
    """The documented production root of an upstream (its registry entry), if it has one."""
    try:
        return registry.get(upstream).real_url
    except LookupError:
        return None
