"""The OGC API – Features conformance classes geofed really serves, for every collection.

pygeoapi 0.24 advertises a fixed list for any feature provider: it lists Part 2 (CRS) and Part 4 (create,
replace, delete), which geofed's read-only upstream collections do not serve, and lacks Features Part 3
`filter` and `features-filter`, which they do (CQL2 text through `filter=`, evaluated by the query engine) —
and without which QGIS never pushes a filter to the server. This replaces the list in place, before the first
request (pygeoapi reads the module constant on every `/conformance`).
"""

from __future__ import annotations

FEATURES = "http://www.opengis.net/spec/ogcapi-features-{}/1.0/conf/{}"
SERVED = [
    FEATURES.format(1, "core"),
    FEATURES.format(1, "oas30"),
    FEATURES.format(1, "html"),
    FEATURES.format(1, "geojson"),
    FEATURES.format(3, "queryables"),
    FEATURES.format(3, "queryables-query-parameters"),
    FEATURES.format(3, "filter"),
    FEATURES.format(3, "features-filter"),
    "http://www.opengis.net/spec/ogcapi-common-3/1.0/conf/schemas",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]


def install() -> None:
    from pygeoapi.api import itemtypes

    itemtypes.CONFORMANCE_CLASSES_FEATURES[:] = SERVED
