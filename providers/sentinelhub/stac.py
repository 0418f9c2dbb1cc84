"""Sentinel Hub's Catalog as a member of geofed's STAC federation: collections `sentinelhub:<native id>`.

One upstream search per collection (the upstream takes exactly one), at the collection's deployment, `datetime`
always sent, `limit` clamped to 1..100, native paging state `{"c": <collection index>, "n": <context.next>}`.
Sentinel Hub returns items in its own order, so `sorts_natively` is False and the bridge sorts.

Filters (doc: the POST `filter` is an `andExpression`, a `cql2NotExpression` or a comparison predicate — binary
comparison or `isBetween` — and the queryables schema lists the collection's queryables with
`additionalProperties: false`): only the largest part of the client's filter that fits goes upstream — the
AND-ed parts that compare one of the upstream's queryables with literals of its type (or NOT one), re-encoded
as CQL2 JSON. Everything else (OR, IN, LIKE, spatial and temporal operators, other properties, `datetime`, `id`)
is evaluated by the bridge: this member does not `evaluates_query`, so the bridge applies the whole filter to every item
it returns (`FederatedQuery.matches`) and pages exactly; it also turns AND-ed `datetime`/`id` parts into the
search's `datetime`/`ids` (`stac_bridge.narrow`). Parts on `collection` are decided here (a collection they
exclude is not searched); an AND-ed `S_INTERSECTS(geometry, <literal>)` becomes the search's `intersects` when it
has no other footprint.
"""

from __future__ import annotations

from typing import Any

import orjson
from pygeofilter import ast, values

from geofed import cql2, upstreams
from geofed.query import ItemContext
from geofed.settings import get_settings
from providers.sentinelhub import records
from providers.sentinelhub.client import MAX_LIMIT, NAME, Catalog, SearchRequest, clamp_limit
from stac_bridge.member import Member, MemberPage, SearchParams, SortBy

COMPARISONS: dict[type, str] = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=",
                                ast.GreaterThan: ">", ast.GreaterEqual: ">="}
# JSON Schema type of a queryable → the Python types of literals the Catalog can compare it with
# Scalar item properties (doc: the item sample) that the bridge can filter on locally, offered as queryables of
# the collections whose summaries list them (the Catalog itself only filters on its queryables).
LOCAL_QUERYABLES: dict[str, dict[str, Any]] = {
    "platform": {"description": "Satellite", "type": "string"},
    "constellation": {"description": "Constellation", "type": "string"},
    "gsd": {"description": "Ground sample distance (m)", "type": "number"},
}
LITERAL_TYPES: dict[str, tuple[type, ...]] = {"number": (int, float), "integer": (int,), "string": (str,),
                                              "boolean": (bool,)}


class CatalogMember:
    name = NAME
    max_page_size = MAX_LIMIT

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:  # built on first use: the shared UpstreamClient lives on the upstream loop
            self._catalog = Catalog()
        return self._catalog

    async def collections(self) -> list[dict[str, Any]]:
        return [records.to_collection(c) for c in await self.catalog.collections()]

    def owns(self, collection_id: str) -> bool:
        return collection_id.startswith(records.PREFIX)

    def sorts_natively(self, sortby: SortBy) -> bool:
        return False  # the Catalog's order is its own (not documented); the bridge sorts

    async def search(self, params: SearchParams, state: Any | None) -> MemberPage:
        mine = [c for c in params.collections if self.owns(c)]
        index = int((state or {}).get("c", 0))
        token = (state or {}).get("n")
        node = _filter_node(params)
        # An empty collection moves on to the next one here, so no empty page carries a `next` state.
        while index < len(mine):
            native = records.native_id(mine[index])
            if not _collection_may_match(node, mine[index]):  # no upstream call for an excluded collection
                index, token = index + 1, None
                continue
            queryables = await self.catalog.queryables(native) if node is not None else {}
            request = SearchRequest(
                collection=native, start=params.start, end=params.end, bbox=params.bbox,
                intersects=_intersects(node, params), ids=params.ids, filter=pushdown(node, queryables),
                filter_lang="cql2-json", limit=clamp_limit(params.limit),
            )
            page = await self.catalog.search(request, token)
            ctx = _context(mine[index])
            items = [records.to_item(record, ctx) for record in page.records]
            if page.next is not None:
                return MemberPage(items, {"c": index, "n": page.next})
            index, token = index + 1, None
            if items:
                return MemberPage(items, {"c": index, "n": None} if index < len(mine) else None)
        return MemberPage([], None)

    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        record = await self.catalog.item(records.native_id(collection_id), item_id)
        return records.to_item(record, _context(collection_id))

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        """The upstream's queryables (pushed down), plus what the bridge evaluates on the items: `datetime` (it
        also narrows the search's `datetime`) and the scalar item properties the collection's summaries list."""
        native = records.native_id(collection_id)
        found = await self.catalog.queryables(native)
        found.setdefault("datetime", {"description": "Acquisition time", "type": "string", "format": "date-time"})
        summaries = (await self.catalog.collection(native)).get("summaries") or {}
        for name, schema in LOCAL_QUERYABLES.items():
            if name in summaries and name not in found:
                listed = summaries[name]
                enum = {"enum": list(listed)} if schema["type"] == "string" and isinstance(listed, list) else {}
                found[name] = {**schema, **enum}
        return found


def _context(collection_id: str) -> ItemContext:
    return ItemContext(collection_id, get_settings().public_url)


def _filter_node(params: SearchParams) -> Any | None:
    """The client's filter as an AST (the bridge parses it; a bare `filter_raw` is parsed here)."""
    if params.filter is not None:
        return params.filter
    raw = params.filter_raw
    if raw in (None, "", {}):
        return None
    if params.filter_lang == "cql2-json" or isinstance(raw, dict):
        return cql2.parse_json(orjson.loads(raw) if isinstance(raw, str) else raw)
    return cql2.parse_text(str(raw))


def _collection_may_match(node: Any | None, collection: str) -> bool:
    """False when an AND-ed part on `collection` alone excludes this collection."""
    return all(cql2.predicate(part)({"collection": collection, "properties": {}})
               for part in cql2.conjuncts(node) if cql2.attributes(part) == {"collection"})


def _intersects(node: Any | None, params: SearchParams) -> dict[str, Any] | None:
    """The search's `intersects`: the client's, else an AND-ed `S_INTERSECTS(geometry, <literal>)` when there is
    no bbox either (a narrowing only: the bridge still evaluates the whole filter)."""
    if params.intersects is not None or params.bbox is not None:
        return params.intersects
    for part in cql2.conjuncts(node):
        if isinstance(part, ast.GeometryIntersects) and isinstance(part.rhs, values.Geometry) \
                and isinstance(part.lhs, ast.Attribute) and part.lhs.name == "geometry":
            return dict(orjson.loads(orjson.dumps(part.rhs.geometry)))
    return None


def pushdown(node: Any | None, queryables: dict[str, Any]) -> dict[str, Any] | None:
    """The CQL2 JSON the Catalog is sent: the AND of the filter's parts that fit its grammar (None if none)."""
    parts = [_encode(part) for part in cql2.conjuncts(node) if fits(part, queryables)]
    if len(parts) > 1:
        return {"op": "and", "args": parts}
    return parts[0] if parts else None


def fits(part: Any, queryables: dict[str, Any]) -> bool:
    """A comparison or BETWEEN of one of the collection's queryables with literals of its type, or NOT of one."""
    if isinstance(part, ast.Not):
        return fits(part.sub_node, queryables)
    if type(part) in COMPARISONS:
        prop, literals = part.lhs, [part.rhs]
    elif isinstance(part, ast.Between):
        prop, literals = part.lhs, [part.low, part.high]
    else:
        return False
    if not isinstance(prop, ast.Attribute) or prop.name not in queryables:
        return False
    return all(_of_type(value, queryables[prop.name]) for value in literals)


def _of_type(value: Any, schema: dict[str, Any]) -> bool:
    value = cql2.literal(value)
    if isinstance(value, ast.Node) or (isinstance(value, bool) and schema.get("type") != "boolean"):
        return False
    kinds = schema.get("type") or list(LITERAL_TYPES)
    accepted = tuple(t for kind in ([kinds] if isinstance(kinds, str) else kinds) for t in LITERAL_TYPES.get(kind, ()))
    return isinstance(value, accepted)


def _encode(part: Any) -> dict[str, Any]:
    """CQL2 JSON of a part that `fits` (standard `between` args: property, low, high)."""
    if isinstance(part, ast.Not):
        return {"op": "not", "args": [_encode(part.sub_node)]}
    prop = {"property": part.lhs.name}
    if isinstance(part, ast.Between):
        between = {"op": "between", "args": [prop, cql2.literal(part.low), cql2.literal(part.high)]}
        return {"op": "not", "args": [between]} if part.not_ else between
    return {"op": COMPARISONS[type(part)], "args": [prop, cql2.literal(part.rhs)]}


def members() -> list[Member]:
    if upstreams.mode(NAME) == "disabled":
        return []
    return [CatalogMember()]
