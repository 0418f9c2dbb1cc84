"""The Epoch simulator's plots: collections, the cheap column table built once per app, and the plots' geometry,
yearly series, land cover and metadata generated on demand, deterministically from the seed."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

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
# A batch ingested whose statistics Epoch has not computed yet: the doc's `plots_only=true` mode is "useful when
# statistics haven't been computed yet", so these plots are returned only with `plots_only=true` (config
# `pending_plots`, default 300, on top of `plots`).
PENDING = CollectionSpec("cocoa-civ-2025", 0.0, "cocoa", ("coop-gagnoa-04",), ((-5.95, 6.13),), 0.25, (0.5, 6.0),
                         ("2024-01-01",), "2025-10-31", "2025-11-18", "civ")


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
    pending: bool = False  # statistics not computed yet: only in `plots_only=true` answers


def timestamp(day: str) -> str:
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
            monitoring_start=timestamp(f"{self.start_year[j]}-01-01"), monitoring_end=timestamp(self.spec.end),
            area=float(self.area[j]), pending=self.spec is PENDING,
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
    def __init__(self, seed: int, plots: int, pending: int = 0) -> None:
        self.specs = {c.name: c for c in (*COLLECTIONS, PENDING)}
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
        block = Block(PENDING, offset, pending, np.random.default_rng([seed, len(COLLECTIONS)]))
        self.blocks[PENDING.name] = block
        self.rows.extend(block.base(j) for j in range(pending))

    def full(self, row: PlotBase) -> dict[str, Any]:
        return self.blocks[row.collection_id].full(row)


# ----------------------------------------------------------------- query handling
