"""pygeoapi 0.24 workarounds: `POST /collections/{id}/items` (each has a test in tests/test_abuse.py), and one
shortcut (`install()`).

pygeoapi answers these with a 500 (reported upstream, see the issue 15 closing note):
- no `Content-Type`: `starlette_app.collection_items` falls through and returns None → TypeError;
- a body that is not UTF-8: `itemtypes.get_collection_items` decodes it inside a `try` whose `except` logs the
  never-assigned `request_data` → UnboundLocalError.
Here they become 400s in OGC exception JSON naming `filter`, before pygeoapi reads the request. Past 0.24 the
guard is off: check that the bugs are fixed, then delete this module.
"""

from __future__ import annotations

from importlib.metadata import version

from starlette.types import Scope

from geofed.errors import InvalidParameter

_PYGEOAPI = tuple(int(p) for p in version("pygeoapi").split(".")[:2] if p.isdigit())
PYGEOAPI_BUGGY = _PYGEOAPI <= (0, 24)


def items_post(scope: Scope, body: bytes) -> bytes:
    """The body of a `POST /collections/{id}/items` (a CQL2 JSON filter), refused where pygeoapi would fail."""
    if not PYGEOAPI_BUGGY:
        return body
    headers = dict(scope.get("headers", []))
    if not headers.get(b"content-type", b"").strip():
        raise InvalidParameter(
            "POST …/items needs a Content-Type: send the 'filter' (CQL2 JSON) as application/json, or "
            "use GET with filter=", parameter="filter")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameter("the request body is not UTF-8: send the 'filter' as UTF-8 CQL2 JSON",
                               parameter="filter") from None
    return body


class DeclaredOptions(list[str]):
    """A process's `jobControlOptions`, as its class declares them.

    pygeoapi 0.24 (`api/processes.py` describe route) appends `async-execute` to the processor's own
    `metadata["jobControlOptions"]` list whenever the manager is async, and that list is the class's
    `PROCESS_METADATA`: from the first description on, a sync-only process advertises (and is executed) async.
    The list ignores that append; the description then tells the truth.
    """

    def append(self, value: str) -> None:
        if not PYGEOAPI_BUGGY or value in self:
            super().append(value)


def declared_metadata(metadata: dict[str, object]) -> dict[str, object]:
    """A per-instance copy of a processor's metadata whose `jobControlOptions` pygeoapi cannot extend."""
    options = metadata.get("jobControlOptions") or ["sync-execute"]
    return {**metadata, "jobControlOptions": DeclaredOptions(options)}  # type: ignore[arg-type]


def install() -> None:
    """Patches pygeoapi where nothing can sit in front of it.

    `get_collection_items` sends every bbox through `crs.transform_bbox`, which builds a pyproj transformer and
    looks the target up in the EPSG database (`to_epsg`) even when the bbox is already in the storage CRS — the
    case of every plain `bbox=` request, and ~8 % of the server's CPU under load. Same CRS: the bbox as given.
    """
    from pygeoapi.api import itemtypes

    original = itemtypes.transform_bbox
    if getattr(original, "geofed_same_crs", False):
        return

    def transform_bbox(bbox: list[float], from_crs: str, to_crs: str, *args: object, **kwargs: object) -> list[float]:
        if isinstance(from_crs, str) and from_crs == to_crs:
            return list(bbox)
        return original(bbox, from_crs, to_crs, *args, **kwargs)

    transform_bbox.geofed_same_crs = True  # type: ignore[attr-defined]
    itemtypes.transform_bbox = transform_bbox
