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
- dynamic filters compare a column's value as text (`str(value) == param`); an unknown column answers 400;
  `aggregate` and `plots_only` together answer 400; bad dates/booleans/limits answer 400 `{"detail": ...}`;
- the aggregate geometry is the bounding box of the matched plots; `collection_id`/`facility_id` are kept when
  every plot shares them, else null; zero matching plots give an empty body;
- `blank_line_every` 5000: a blank keep-alive line every N features (the doc's example skips blank lines);
- `final_newline` true: whether the last line is newline-terminated (many NDJSON writers omit it);
- a missing or wrong bearer token answers 401.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulators.framework import SimulatorState, chunked, create_simulator_app, ndjson_chunks

PATH = "/fetch_biomass_emissions"
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
LC_CLASSES = (1, 2, 3, 4, 5)  # legend UNSPEC: 1 tree cover, 2 shrub, 3 grass, 4 cropland, 5 bare (our choice)
STAT_FIELDS = ("luc", "biogenic", "soc", "removal")
STAT_COLUMNS = tuple(
    f"{name}_{suffix}" for name in STAT_FIELDS
    for suffix in ("tco2eyear", "tco2ehayear", *(("uncertainty_sd",) if name != "soc" else ()))
)


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    share: float
    crop: str
    facilities: tuple[str, ...]
    centers: tuple[tuple[float, float], ...]  # lon, lat of production areas
    spread: float  # degrees around a center
    area: tuple[float, float]  # hectares
    starts: tuple[str, ...]  # monitoring_start choices
    end: str  # monitoring_end of the collection
    ingested: str
    style: str  # metadata shape


COLLECTIONS = (
    CollectionSpec("cocoa-civ-2024", 0.4, "cocoa", ("coop-soubre-01", "coop-daloa-02", "coop-duekoue-03"),
                   ((-6.59, 5.78), (-6.45, 6.88), (-7.35, 6.75)), 0.30, (0.5, 6.0),
                   ("2020-01-01", "2021-01-01"), "2024-01-10", "2024-01-10", "civ"),
    CollectionSpec("cocoa-gha-2024", 0.3, "cocoa", ("lbc-sefwi-01", "lbc-ashanti-02"),
                   ((-2.49, 6.20), (-1.62, 6.69), (-2.33, 7.33)), 0.25, (0.5, 8.0),
                   ("2019-01-01", "2020-01-01", "2021-01-01"), "2023-12-31", "2024-02-02", "gha"),
    CollectionSpec("soy-mt-2023", 0.3, "soy", ("trader-sorriso", "trader-sinop"),
                   ((-55.71, -12.55), (-55.50, -11.86), (-56.10, -13.06)), 0.40, (2.0, 20.0),
                   ("2018-01-01", "2019-01-01"), "2023-06-30", "2023-08-15", "bra"),
)


@dataclass(frozen=True, slots=True)
class PlotBase:
    """The cheap, filterable columns of one plot (the rest is assembled from the block's arrays on demand)."""

    index: int
    uuid: str
    plotid: str
    collection_id: str
    facility_id: str
    ingestion_date: str
    monitoring_start: str
    monitoring_end: str
    area: float


def _ts(day: str) -> str:
    return f"{day}T00:00:00+00:00"


MAX_YEARS = 8
_GIVEN = ("Adjoua", "Kouassi", "Akissi", "Yao", "Ama", "Kofi", "Abena", "Kwame", "Ana", "João", "Marcos", "Luiza")
_FAMILY = ("KOUADIO", "KONAN", "N'GUESSAN", "MENSAH", "OWUSU", "BOATENG", "SILVA", "SOUZA", "OLIVEIRA")
_DISTRICTS = ("Sefwi Wiawso", "Bibiani", "Atwima Mponua", "Sunyani West")
_CERTS = ("Rainforest Alliance", "Fairtrade", None)
_MUNICIPIOS = ("Sorriso", "Sinop", "Lucas do Rio Verde")


class Block:
    """One collection's plots as numpy columns, drawn at once (vectorised: 100 000 plots in about a second)."""

    def __init__(self, spec: CollectionSpec, offset: int, n: int, rng: np.random.Generator) -> None:
        self.spec, self.offset, self.n = spec, offset, n
        self.start_year = np.array([int(d[:4]) for d in spec.starts])[rng.integers(0, len(spec.starts), n)]
        self.years = int(spec.end[:4]) - self.start_year  # full years inside the monitoring window
        lo, hi = spec.area
        self.area = np.round(np.exp(rng.uniform(np.log(lo), np.log(hi), n)), 6)  # many small plots, few large
        centers = np.array(spec.centers)[np.arange(n) % len(spec.centers)]
        self.lon = centers[:, 0] + rng.normal(0, spec.spread, n)
        self.lat = centers[:, 1] + rng.normal(0, spec.spread * 0.7, n)
        self.facility = rng.integers(0, len(spec.facilities), n)
        self.minutes = rng.integers(0, 60 * 24 * 20, n)
        self.ids = rng.bytes(48 * n)
        k = np.arange(MAX_YEARS)[None, :]
        cleared = (rng.random(n) < 0.15) if spec.crop == "soy" else np.zeros(n, bool)
        clear_k = 1 + np.floor(rng.random(n) * np.maximum(self.years - 1, 1)).astype(int)
        gone = cleared[:, None] & (k >= clear_k[:, None])
        if spec.crop == "cocoa":
            agb0, trend = rng.uniform(35, 90, n), rng.uniform(-4, 3, n)
            lc = np.where(rng.random((n, MAX_YEARS)) < 0.05, rng.integers(1, 6, (n, MAX_YEARS)), 1)
        else:
            agb0 = np.where(cleared, rng.uniform(120, 180, n), rng.uniform(5, 15, n))
            trend = np.where(cleared, 0.0, rng.uniform(-0.5, 0.5, n))
            lc = np.where(cleared[:, None] & ~gone, 1, 4)
        grown = np.maximum(1.0, agb0[:, None] + trend[:, None] * k + rng.normal(0, 2, (n, MAX_YEARS)))
        self.agb = np.round(np.where(gone, rng.uniform(6, 12, (n, MAX_YEARS)), grown), 2)
        self.bgb = np.round(self.agb * rng.uniform(0.22, 0.28, (n, MAX_YEARS)), 2)
        self.soc = np.round(rng.uniform(3, 12, (n, MAX_YEARS)), 2)
        self.lc = lc  # legend UNSPEC; ours: 1 tree cover, 2 shrub, 3 grass, 4 cropland, 5 bare
        rows = np.arange(n)
        last = np.maximum(self.years - 1, 0)
        carbon = self.agb + self.bgb
        luc = np.round((carbon[rows, last] - carbon[:, 0]) / np.maximum(self.years - 1, 1), 3)
        per_ha = {"luc": luc, "biogenic": np.round(rng.uniform(0, 0.4, n), 3),
                  "soc": np.round(rng.uniform(-0.2, 0.3, n), 3),
                  "removal": np.round(np.maximum(0, luc) * rng.uniform(0.3, 0.9, n), 3)}
        # one row of numbers per plot, in STAT_COLUMNS order: per-year totals, per-hectare, uncertainty SD
        columns = []
        for name in STAT_FIELDS:
            columns += [np.round(per_ha[name] * self.area, 3), per_ha[name]]
            if name != "soc":  # the doc has no soc uncertainty field
                columns.append(np.round(np.abs(per_ha[name] * self.area) * rng.uniform(0.1, 0.8, n) + 0.05, 3))
        self.stats = np.stack(columns, axis=1)
        valid = k < self.years[:, None]
        self.summary = {}  # field -> (mean, std) over the plot's years
        for field, matrix in (("annual_agb", self.agb), ("annual_bgb", self.bgb), ("annual_soc", self.soc)):
            mean = (matrix * valid).sum(axis=1) / self.years
            std = np.sqrt((((matrix - mean[:, None]) * valid) ** 2).sum(axis=1) / self.years)
            self.summary[field] = np.stack([np.round(mean, 2), np.round(std, 2)], axis=1)
        self.thumbs = rng.random(n) > 0.1
        self.vertices = rng.integers(5, 10, n)
        # irregular polygons of about `area` hectares around each plot's centre
        sides = self.vertices[:, None]
        radius_m = np.sqrt(self.area[:, None] * 10_000 / (sides / 2 * np.sin(2 * np.pi / sides)))
        radius_m = radius_m * rng.uniform(0.85, 1.15, (n, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, (n, 9)), axis=1)
        lon_m = 111_320.0 * np.cos(np.radians(self.lat))[:, None]
        self.xs = np.round(self.lon[:, None] + radius_m * np.cos(angles) / lon_m, 7)
        self.ys = np.round(self.lat[:, None] + radius_m * np.sin(angles) / 111_320.0, 7)
        self.meta = rng.integers(0, 10**7, (n, 6))

    def base(self, j: int) -> PlotBase:
        raw = self.ids[48 * j: 48 * j + 48]
        ingested = dt.datetime.fromisoformat(self.spec.ingested).replace(tzinfo=dt.UTC)
        return PlotBase(
            index=self.offset + j, uuid=str(uuid.UUID(bytes=raw[:16], version=4)),
            plotid=str(uuid.UUID(bytes=raw[16:32], version=5)), collection_id=self.spec.name,
            facility_id=self.spec.facilities[self.facility[j]],
            ingestion_date=(ingested + dt.timedelta(minutes=int(self.minutes[j]))).isoformat(),
            monitoring_start=_ts(f"{self.start_year[j]}-01-01"), monitoring_end=_ts(self.spec.end),
            area=float(self.area[j]),
        )

    def full(self, row: PlotBase) -> dict[str, Any]:
        """Every documented property of a plot (annual_* as objects), plus its polygon."""
        j = row.index - self.offset
        first = int(self.start_year[j])
        n_years = int(self.years[j])
        years = [str(y) for y in range(first, first + n_years)]
        props: dict[str, Any] = {
            "uuid": row.uuid, "plotid": row.plotid, "collection_id": row.collection_id,
            "facility_id": row.facility_id, "ingestion_date": row.ingestion_date,
            "monitoring_start": row.monitoring_start, "monitoring_end": row.monitoring_end, "area": row.area,
        }
        props.update(zip(STAT_COLUMNS, self.stats[j].tolist(), strict=True))
        for field, matrix in (("annual_agb", self.agb), ("annual_bgb", self.bgb), ("annual_soc", self.soc)):
            mean, std = self.summary[field][j].tolist()
            props[field] = {"mean": mean, "std": std, **dict(zip(years, matrix[j, :n_years].tolist(), strict=True))}
        props["annual_lc"] = dict(zip(years, self.lc[j, :n_years].tolist(), strict=True))
        url = f"https://storage.googleapis.com/epoch-sim-thumbnails/{row.collection_id}/{row.uuid}"
        props["thumbnail_url"] = f"{url}.png" if self.thumbs[j] else None
        props["thumbnail_url_lc"] = f"{url}_lc.png" if self.thumbs[j] else None
        props["metadata"] = self._metadata(j, row)
        sides = int(self.vertices[j])
        ring = [list(p) for p in zip(self.xs[j, :sides].tolist(), self.ys[j, :sides].tolist(), strict=True)]
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "properties": props}

    def _metadata(self, j: int, row: PlotBase) -> dict[str, Any]:
        """Free-form upload attributes whose shape differs per collection (synthetic names only: no real PII)."""
        m = self.meta[j].tolist()
        name = f"{_FAMILY[m[0] % len(_FAMILY)]} {_GIVEN[m[1] % len(_GIVEN)]}"
        if self.spec.style == "civ":
            declared = round(row.area * (0.8 + (m[2] % 300) / 1000), 2)
            return {"area": declared, "farmerCode": f"SCH_SIM_{row.facility_id[-2:]}_{row.index:06d}",
                    "farmerId": str(uuid.UUID(bytes=self.ids[48 * j + 32: 48 * j + 48], version=4)),
                    "farmerName": name + " ", "name": name, "plotArea": declared, "plotCode": None,
                    "plotId": row.plotid}
        if self.spec.style == "gha":
            meta: dict[str, Any] = {"farmer_id": f"GH-{m[3]:07d}", "district": _DISTRICTS[m[2] % len(_DISTRICTS)],
                                    "certification": _CERTS[m[4] % len(_CERTS)], "cocoa_age_years": 3 + m[5] % 33}
            if m[5] % 10 < 3:
                meta["shade_trees"] = m[4] % 41
            return meta
        return {"fazenda": f"Fazenda Simulada {m[2] % 1000:03d}", "car_code": f"MT-{m[3]:07d}",
                "municipio": _MUNICIPIOS[m[4] % len(_MUNICIPIOS)], "safra": "2022/23"}


class PlotTable:
    def __init__(self, seed: int, plots: int) -> None:
        self.specs = {c.name: c for c in COLLECTIONS}
        self.blocks: dict[str, Block] = {}
        self.rows: list[PlotBase] = []
        counts = [round(c.share * plots) for c in COLLECTIONS]
        counts[-1] = plots - sum(counts[:-1])
        offset = 0
        for k, (spec, count) in enumerate(zip(COLLECTIONS, counts, strict=True)):
            block = Block(spec, offset, count, np.random.default_rng([seed, k]))
            self.blocks[spec.name] = block
            self.rows.extend(block.base(j) for j in range(count))
            offset += count

    def full(self, row: PlotBase) -> dict[str, Any]:
        return self.blocks[row.collection_id].full(row)


# ----------------------------------------------------------------- query handling
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

    @property
    def table(self) -> PlotTable:
        if self._table is None:  # built lazily, once per app
            self._table = PlotTable(self.state.seed, int(self.state.config["plots"]))
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
        rows = self.table.rows
        filename = params.pop("filename", None)
        if filename is not None:
            if filename not in self.table.specs and config["unknown_filename"] == "404":
                raise BadRequest(f"collection {filename!r} not found", 404)
            rows = [r for r in rows if r.collection_id == filename]
        if start or end:
            lo, hi = _ts(start) if start else "", _ts(end) if end else "~"
            if config["window_match"] == "within":
                rows = [r for r in rows if r.monitoring_start >= lo and r.monitoring_end <= hi]
            else:
                rows = [r for r in rows if r.monitoring_end >= lo and r.monitoring_start <= hi]
        cheap = {k: v for k, v in params.items() if k in PlotBase.__slots__ and k not in ("lon", "lat", "index")}
        for key, value in cheap.items():
            rows = [r for r in rows if str(getattr(r, key)) == value]
        rest = {k: v for k, v in params.items() if k not in cheap}
        columns = set(self.table.full(self.table.rows[0])["properties"]) if self.table.rows else set()
        unknown = sorted(set(rest) - columns)
        if unknown:
            raise BadRequest(f"unknown column(s): {', '.join(unknown)}")

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
            state.config.update({k: v for k, v in update.items() if k in defaults and k != "plots"})
        return JSONResponse(state.config)

    return create_simulator_app(state, [
        Route(PATH, fetch, methods=["GET"]),
        Route("/_sim/config", sim_config, methods=["GET", "POST"]),
    ])
