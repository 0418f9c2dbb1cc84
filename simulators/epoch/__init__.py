"""Epoch SCo2 API simulator (contract: ../shared/upstreams/docs/epoch-biomass-api.txt).

One endpoint, `GET /fetch_biomass_emissions`, streaming NDJSON (one GeoJSON Feature per line, chunked transfer,
lines split across chunks) in its three documented modes: plots (default), `aggregate=true` (one feature: sums,
area-weighted averages, counts, exactly as the doc defines them) and `plots_only=true` (no statistics).

The data: `plots` (default 20 000; env `SIM_EPOCH_PLOTS`) smallholder and farm plots over three collections
(cocoa in Côte d'Ivoire and Ghana, soy in Mato Grosso), generated deterministically from the seed. A small
table of cheap columns is built once per app on first use (≈ 0.2 s per 20 000 plots); the polygon, yearly
AGB/BGB/SOC series, land cover and metadata of a plot are generated only when it is streamed or filtered on.

Where the doc is silent we pick one behaviour, configurable at `create_app(**config)` or at run time through
`POST /_sim/config` (JSON):
- `annual_encoding` "string" (default, as the doc's Notes say) | "object" (as its samples show) | "mixed"
  (alternating per plot): how `annual_agb/bgb/soc/lc` are sent;
- `filename` matches a plot's `collection_id` (the doc calls both "collection identifier"); an unknown
  filename answers 404 `{"detail": ...}` (`unknown_filename`: "404" | "empty");
- `window_match` "overlap" (default) | "within": how `monitoring_start`/`monitoring_end` select plots;
- `aggregate_default_limit` 1: with `aggregate=true` and no `limit`, only the first matching plot is
  aggregated (the doc: "returns the first matching case"); without filters the plots default is 10 000;
- dynamic filters compare a column's value as text (`str(value) == param`). The doc names the batch table's
  columns `plotid`, `collection_id`, `facility_id` ("any column name from the batch table", no list): those are
  the columns accepted (`filter_columns`; `["*"]` = every property of a plot); any other name, `uuid` included
  (a property of the answers, never listed as a column), answers 400 "unknown column(s)";
- `row_order` "stable" (default: table order) | "shuffle" (a different order on every call, as the doc promises
  no order: a client that re-opens the stream and skips what it served must not rely on it);
- `pending_plots` 300: plots of a batch (`cocoa-civ-2025`) whose statistics are not computed yet: returned only
  with `plots_only=true` (the doc: that mode is "useful when statistics haven't been computed yet"), never in the
  default or aggregate modes;
  `aggregate` and `plots_only` together answer 400; bad dates/booleans/limits answer 400 `{"detail": ...}`;
- the aggregate geometry is the bounding box of the matched plots; `collection_id`/`facility_id` are kept when
  every plot shares them, else null; zero matching plots give an empty body;
- `blank_line_every` 5000: a blank keep-alive line every N features (the doc's example skips blank lines);
- `final_newline` true: whether the last line is newline-terminated (many NDJSON writers omit it);
- a missing or wrong bearer token answers 401.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulators.epoch.data import DATE, FALSE, STAT_FIELDS, TRUE, PlotBase, PlotTable, timestamp
from simulators.framework import SimulatorState, chunked, create_simulator_app, ndjson_chunks

PATH = "/fetch_biomass_emissions"
DOCUMENTED_COLUMNS = ["plotid", "collection_id", "facility_id"]  # the doc's filter examples

class BadRequest(Exception):
    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def _bool(params: dict[str, str], name: str) -> bool:
    value = params.pop(name, None)
    if value is None:
        return False
    if value.lower() in TRUE | FALSE:
        return value.lower() in TRUE
    raise BadRequest(f"{name} must be a boolean, got {value!r}")


def _date(params: dict[str, str], name: str) -> str | None:
    value = params.pop(name, None)
    if value is None:
        return None
    if not DATE.match(value):
        raise BadRequest(f"{name} must be YYYY-MM-DD, got {value!r}")
    return value


class EpochSimulator:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._table: PlotTable | None = None
        self.calls = 0  # `row_order` "shuffle": each call's order is seeded by its number

    @property
    def table(self) -> PlotTable:
        if self._table is None:  # built lazily, once per app
            config = self.state.config
            self._table = PlotTable(self.state.seed, int(config["plots"]), int(config["pending_plots"]))
        return self._table

    def select(self, raw: dict[str, str]) -> tuple[Iterator[dict[str, Any]], bool, bool]:
        """(matching full plots, aggregate, plots_only) for a query string; raises BadRequest."""
        params = dict(raw)
        config = self.state.config
        aggregate, plots_only = _bool(params, "aggregate"), _bool(params, "plots_only")
        if aggregate and plots_only:
            raise BadRequest("aggregate and plots_only cannot both be true")
        start, end = _date(params, "monitoring_start"), _date(params, "monitoring_end")
        limit_text = params.pop("limit", None)
        if limit_text is None:
            limit = int(config["aggregate_default_limit"]) if aggregate else 10_000
        elif limit_text.isdigit():
            limit = int(limit_text)
        else:
            raise BadRequest(f"limit must be a non-negative integer, got {limit_text!r}")
        rows = self.table.rows if plots_only else [r for r in self.table.rows if not r.pending]
        filename = params.pop("filename", None)
        if filename is not None:
            if filename not in self.table.specs and config["unknown_filename"] == "404":
                raise BadRequest(f"collection {filename!r} not found", 404)
            rows = [r for r in rows if r.collection_id == filename]
        if start or end:
            lo, hi = timestamp(start) if start else "", timestamp(end) if end else "~"
            if config["window_match"] == "within":
                rows = [r for r in rows if r.monitoring_start >= lo and r.monitoring_end <= hi]
            else:
                rows = [r for r in rows if r.monitoring_end >= lo and r.monitoring_start <= hi]
        accepted = list(config["filter_columns"])
        if "*" in accepted:
            accepted = list(self.table.full(self.table.rows[0])["properties"]) if self.table.rows else []
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise BadRequest(f"unknown column(s): {', '.join(unknown)}")
        cheap = {k: v for k, v in params.items() if k in PlotBase.__slots__ and k not in ("index", "pending")}
        for key, value in cheap.items():
            rows = [r for r in rows if str(getattr(r, key)) == value]
        rest = {k: v for k, v in params.items() if k not in cheap}
        if config["row_order"] == "shuffle":
            self.calls += 1
            rows = list(rows)
            random.Random(self.calls).shuffle(rows)

        def plots() -> Iterator[dict[str, Any]]:
            sent = 0
            for row in rows:
                if sent >= limit:
                    return
                plot = self.table.full(row)
                props = plot["properties"]
                if all(str(props.get(k)) == v for k, v in rest.items()):
                    sent += 1
                    yield plot

        return plots(), aggregate, plots_only

    def encode(self, props: dict[str, Any], index: int) -> dict[str, Any]:
        mode = self.state.config["annual_encoding"]
        if mode == "string" or (mode == "mixed" and index % 2 == 0):
            return {k: (orjson.dumps(v).decode() if k.startswith("annual_") else v) for k, v in props.items()}
        return props

    def lines(self, plots: Iterator[dict[str, Any]], plots_only: bool) -> Iterator[str]:
        every = int(self.state.config["blank_line_every"])
        for n, plot in enumerate(plots):
            if every and n and n % every == 0:
                yield ""
            props = plot["properties"]
            if plots_only:
                props = {k: props[k] for k in ("uuid", "plotid", "ingestion_date", "area", "metadata")}
            else:
                props = self.encode(props, n)
            yield orjson.dumps({"type": "Feature", "geometry": plot["geometry"], "properties": props}).decode()

    def aggregate(self, plots: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
        """The doc's aggregation: sums, area-weighted averages, earliest/latest dates, distinct plot count."""
        rows = [p["properties"] | {"_geometry": p["geometry"]} for p in plots]
        if not rows:
            return None
        area = sum(r["area"] for r in rows)
        props: dict[str, Any] = {}
        for key in ("collection_id", "facility_id"):
            values = {r[key] for r in rows}
            props[key] = values.pop() if len(values) == 1 else None
        props["ingestion_date"] = max(rows, key=lambda r: r["ingestion_date"])["ingestion_date"]
        props["monitoring_start"] = min(r["monitoring_start"] for r in rows)[:10]
        props["monitoring_end"] = max(r["monitoring_end"] for r in rows)[:10]
        for name in STAT_FIELDS:
            props[f"{name}_tco2eyear"] = sum(r[f"{name}_tco2eyear"] for r in rows)
            props[f"{name}_tco2ehayear"] = sum(r[f"{name}_tco2ehayear"] * r["area"] for r in rows) / area
            if name != "soc":
                props[f"{name}_uncertainty_sd"] = sum(r[f"{name}_uncertainty_sd"] for r in rows)
        for field in ("annual_agb", "annual_bgb", "annual_soc"):
            weighted: dict[str, float] = {}
            weights: dict[str, float] = {}
            for r in rows:
                for key, value in r[field].items():
                    weighted[key] = weighted.get(key, 0.0) + value * r["area"]
                    weights[key] = weights.get(key, 0.0) + r["area"]
            props[field] = {k: weighted[k] / weights[k] for k in weighted}
        props["aggregate_area"] = area
        props["aggregate_plot_count"] = len({r["uuid"] for r in rows})
        props["metadata"] = {}
        xs = [c[0] for r in rows for c in r["_geometry"]["coordinates"][0]]
        ys = [c[1] for r in rows for c in r["_geometry"]["coordinates"][0]]
        w, s, e, n = min(xs), min(ys), max(xs), max(ys)
        geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        return {"type": "Feature", "geometry": geometry, "properties": self.encode(props, 0)}


def _without_final_newline(chunks: Iterable[bytes]) -> Iterator[bytes]:
    previous: bytes | None = None
    for chunk in chunks:
        if previous is not None:
            yield previous
        previous = chunk
    if previous:
        yield previous.removesuffix(b"\n")


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Starlette:
    defaults = {
        "plots": int(os.environ.get("SIM_EPOCH_PLOTS", "20000")),
        "annual_encoding": os.environ.get("SIM_EPOCH_ANNUAL_ENCODING", "string"),
        "unknown_filename": "404",
        "window_match": "overlap",
        "aggregate_default_limit": 1,
        "blank_line_every": 5000,
        "chunk_size": 8192,
        "final_newline": True,
        "filter_columns": DOCUMENTED_COLUMNS,
        "row_order": "stable",
        "pending_plots": int(os.environ.get("SIM_EPOCH_PENDING_PLOTS", "300")),
    }
    state = SimulatorState("epoch", seed=seed, credentials=dict(credentials),
                           config={**defaults, **{k: v for k, v in config.items() if k in defaults}})
    sim = EpochSimulator(state)
    token = credentials.get("token", "")

    async def fetch(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not token or value.strip() != token:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        try:
            plots, aggregate, plots_only = sim.select(dict(request.query_params))
        except BadRequest as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        if aggregate:
            feature = sim.aggregate(plots)
            lines: Iterator[str] = iter([orjson.dumps(feature).decode()] if feature else [])
        else:
            lines = sim.lines(plots, plots_only)
        chunks = ndjson_chunks(lines, int(state.config["chunk_size"]))
        if not state.config["final_newline"]:
            chunks = _without_final_newline(chunks)
        return StreamingResponse(chunked(state, chunks, request.url.path), media_type="application/x-ndjson")

    async def sim_config(request: Request) -> Response:
        if request.method == "POST":
            update = await request.json()
            fixed = ("plots", "pending_plots")  # the table is built once per app
            state.config.update({k: v for k, v in update.items() if k in defaults and k not in fixed})
        return JSONResponse(state.config)

    return create_simulator_app(state, [
        Route(PATH, fetch, methods=["GET"]),
        Route("/_sim/config", sim_config, methods=["GET", "POST"]),
    ])
