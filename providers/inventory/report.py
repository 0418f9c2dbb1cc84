"""The inventory as one self-contained HTML page: a map of the area and its features and a bar chart of the
plume emissions by sector, both inline SVG, and the summary's tables. No script, font, stylesheet or tile is
loaded from anywhere: the page renders offline and can be mailed as a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from html import escape
from typing import Any

MAP_W, MAP_H, PAD, LEGEND_H, MAX_PANELS = 720, 480, 16, 28, 6
CHART_W, BAR_H, LABEL_W = 720, 22, 150
COLOURS = {"CH4": "#d95f02", "CO2": "#1b9e77", "plot": "#66a61e", "source": "#7570b3", "area": "#1f78b4"}
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.warn{background:#fff3cd;padding:8px;border:1px solid #e0c36c}
svg{border:1px solid #ccc;background:#fbfbf8}.muted{color:#777}
"""


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):,.{digits}f}"


def _table(head: list[str], rows: Iterable[list[str]], left: int = 1) -> str:
    cells = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _link(href: str, text: str) -> str:
    return f'<a href="{escape(href, quote=True)}">{escape(text)}</a>'


# ----------------------------------------------------------------- map
class Projection:
    """lon/lat → SVG pixels of a `width` × `height` panel over `bbox` (equirectangular, x scaled by the cosine of
    the mid latitude)."""

    def __init__(self, bbox: tuple[float, float, float, float], width: float, height: float) -> None:
        w, s, e, n = bbox
        pad_x, pad_y = max((e - w) * 0.05, 1e-4), max((n - s) * 0.05, 1e-4)
        self.w, self.s, self.e, self.n = w - pad_x, s - pad_y, e + pad_x, n + pad_y
        self.k = math.cos(math.radians((self.s + self.n) / 2))
        span_x, span_y = (self.e - self.w) * self.k, self.n - self.s
        self.scale = min((width - 2 * PAD) / span_x, (height - 2 * PAD) / span_y)
        self.dx = (width - span_x * self.scale) / 2
        self.dy = (height - span_y * self.scale) / 2

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (round(self.dx + (lon - self.w) * self.k * self.scale, 1),
                round(self.dy + (self.n - lat) * self.scale, 1))

    def covers(self, lon: float, lat: float) -> bool:
        return self.w <= lon <= self.e and self.s <= lat <= self.n


def _rings(geometry: dict[str, Any] | None) -> list[list[list[float]]]:
    if not geometry:
        return []
    if geometry.get("type") == "Polygon":
        return list(geometry["coordinates"])
    if geometry.get("type") == "MultiPolygon":
        return [ring for polygon in geometry["coordinates"] for ring in polygon]
    return []


def _path(proj: Projection, geometry: dict[str, Any] | None) -> str:
    parts = []
    for ring in _rings(geometry):
        points = [proj.xy(x, y) for x, y, *_ in ring]
        parts.append("M" + " L".join(f"{x},{y}" for x, y in points) + " Z")
    return " ".join(parts)


def _anchor(geometry: dict[str, Any] | None) -> tuple[float, float] | None:
    """A point of the geometry: the point itself, or a polygon's first vertex."""
    if geometry and geometry.get("type") == "Point":
        x, y, *_ = geometry["coordinates"]
        return float(x), float(y)
    rings = _rings(geometry)
    return (float(rings[0][0][0]), float(rings[0][0][1])) if rings and rings[0] else None


def _panels(area: dict[str, Any]) -> list[dict[str, Any]]:
    """The area's polygons, one map panel each (a MultiPolygon's parts may lie continents apart)."""
    if area.get("type") == "MultiPolygon" and 1 < len(area["coordinates"]) <= MAX_PANELS:
        return [{"type": "Polygon", "coordinates": c} for c in area["coordinates"]]
    return [area]


def _bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    xs = [x for ring in _rings(geometry) for x, *_ in ring]
    ys = [y for ring in _rings(geometry) for _, y, *_ in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _panel(part: dict[str, Any], features: list[dict[str, Any]], width: float, height: float,
           biggest: float) -> str:
    proj = Projection(_bounds(part), width, height)
    out = [f'<path d="{_path(proj, part)}" fill="{COLOURS["area"]}" fill-opacity="0.08" stroke="{COLOURS["area"]}" '
           'stroke-width="2" fill-rule="evenodd"><title>area of interest</title></path>']
    order = {"plot": 0, "source": 1, "plume": 2}
    for feature in sorted(features, key=lambda f: order[f["properties"]["kind"]]):
        props, geometry = feature["properties"], feature.get("geometry")
        where = _anchor(geometry)
        if where is None or not proj.covers(*where):
            continue
        title = f"<title>{escape(props['collection'])}: {escape(str(props['name']))}</title>"
        x, y = proj.xy(*where)
        if props["kind"] == "plot":
            out.append(f'<path d="{_path(proj, geometry)}" fill="{COLOURS["plot"]}" fill-opacity="0.5" '
                       f'stroke="{COLOURS["plot"]}">{title}</path>')
        elif props["kind"] == "source":
            out.append(f'<rect x="{x - 4}" y="{y - 4}" width="8" height="8" fill="none" '
                       f'stroke="{COLOURS["source"]}" stroke-width="1.5">{title}</rect>')
        else:
            r = 2.5 + 7.5 * math.sqrt(abs(float(props.get("emission_auto") or 0)) / biggest)
            colour = COLOURS.get(str(props.get("gas")), "#666")
            out.append(f'<circle cx="{x}" cy="{y}" r="{r:.1f}" fill="{colour}" fill-opacity="0.6" '
                       f'stroke="{colour}">{title}</circle>')
    return "".join(out)


def map_svg(summary: dict[str, Any], features: list[dict[str, Any]]) -> str:
    panels = _panels(summary["area"]["geometry"])
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    width, height = MAP_W / columns, (MAP_H if rows == 1 and columns == 1 else MAP_W / columns)
    total_h = height * rows + (LEGEND_H if len(panels) > 1 else 0)
    biggest = max((abs(float(f["properties"].get("emission_auto") or 0)) for f in features
                   if f["properties"]["kind"] == "plume"), default=1.0) or 1.0
    out = [f'<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{MAP_W}" height="{total_h:.0f}" '
           f'viewBox="0 0 {MAP_W} {total_h:.0f}" role="img" aria-label="Map of the area and its features">']
    for i, part in enumerate(panels):
        x, y = (i % columns) * width, (i // columns) * height
        out.append(f'<svg x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}">'
                   f'<rect width="{width:.1f}" height="{height:.1f}" fill="none" stroke="#ccc"/>'
                   f"{_panel(part, features, width, height, biggest)}</svg>")
    legend = [("CH4 plume", COLOURS["CH4"]), ("CO2 plume", COLOURS["CO2"]), ("source", COLOURS["source"]),
              ("Epoch plot", COLOURS["plot"]), ("area", COLOURS["area"])]
    top = height * rows + 8 if len(panels) > 1 else PAD
    for i, (label, colour) in enumerate(legend):
        x, y = (PAD + i * 130, top) if len(panels) > 1 else (PAD, top + i * 18)
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{x + 18}" y="{y + 11}" font-size="12">{label}</text>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------- chart
def chart_svg(summary: dict[str, Any]) -> str:
    """Horizontal bars: the sum of plume emissions (kg/h) per gas and sector."""
    rows = [(gas, sector, float(stats["sum_kgh"]))
            for gas, block in (summary.get("plumes") or {}).get("by_gas", {}).items()
            for sector, stats in block["by_sector"].items()]
    rows.sort(key=lambda r: -r[2])
    height = max(1, len(rows)) * BAR_H + 40
    out = [f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{height}" '
           f'viewBox="0 0 {CHART_W} {height}" role="img" aria-label="Plume emissions by sector, kg/h">']
    if not rows:
        out.append('<text x="10" y="24" font-size="13">no plume emissions in this area and period</text>')
    top = max((r[2] for r in rows), default=1.0) or 1.0
    span = CHART_W - LABEL_W - 110
    for i, (gas, sector, total) in enumerate(rows):
        y = 10 + i * BAR_H
        width = max(1.0, span * max(total, 0.0) / top)
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(gas)} · '
                   f'{escape(sector)}</text><rect class="bar" x="{LABEL_W}" y="{y + 3}" width="{width:.1f}" '
                   f'height="{BAR_H - 6}" fill="{COLOURS.get(gas, "#666")}"><title>{_num(total)} kg/h</title>'
                   f'</rect><text x="{LABEL_W + width + 6:.1f}" y="{y + 15}" font-size="12">{_num(total)} kg/h'
                   "</text>")
    out.append(f'<text x="{LABEL_W}" y="{height - 8}" font-size="11" fill="#777">sum of emission_auto, kg/h'
               "</text></svg>")
    return "".join(out)


# ----------------------------------------------------------------- page
def _plumes(summary: dict[str, Any]) -> str:
    block = summary["plumes"]
    rows = [[escape(gas), "all", _num(s["count"]), _num(s["sum_kgh"]), _num(s["mean_kgh"]),
             _num(s["sum_uncertainty_kgh"])] for gas, s in block["by_gas"].items()]
    rows += [[escape(gas), escape(sector), _num(s["count"]), _num(s["sum_kgh"]), _num(s["mean_kgh"]),
              _num(s["sum_uncertainty_kgh"])]
             for gas, g in block["by_gas"].items() for sector, s in g["by_sector"].items()]
    largest = [[_link(p["href"], str(p["id"])), escape(str(p["gas"])), escape(str(p["sector"])),
                _num(p["emission_auto"]), _num(p["emission_uncertainty_auto"]), escape(str(p["datetime"] or ""))]
               for p in block["largest"]]
    return (f"<h2>CarbonMapper plumes: {_num(block['count'])}</h2>"
            + _table(["gas", "sector", "plumes", "sum kg/h", "mean kg/h", "± kg/h (sum)"], rows, left=2)
            + "<h3>Largest plumes</h3>"
            + _table(["plume", "gas", "sector", "kg/h", "± kg/h", "scene time"], largest, left=3))


def _sources(summary: dict[str, Any]) -> str:
    block = summary["sources"]
    rows = [[_link(s["href"], str(s["id"])), escape(str(s["gas"])), escape(str(s["sector"])),
             _num(s["persistence"], 2), _num(s["emission_auto"]), _num(s["plume_count"])]
            for s in block["items"][:50]]
    more = f'<p class="muted">… and {block["count"] - 50} more</p>' if block["count"] > 50 else ""
    return (f"<h2>CarbonMapper sources: {_num(block['count'])}</h2>"
            + _table(["source", "gas", "sector", "persistence", "mean kg/h", "plumes"], rows, left=3) + more)


def _plots(summary: dict[str, Any]) -> str:
    block = summary["plots"]
    names = ["luc_tco2eyear", "biogenic_tco2eyear", "soc_tco2eyear", "removal_tco2eyear", "net_tco2eyear"]
    rows = [[escape(name), _num(c["count"]), _num(c["area_ha"], 2), *(_num(c[n], 2) for n in names)]
            for name, c in [*block["collections"].items(), ("all", block)]]
    return (f"<h2>Epoch plots: {_num(block['count'])}</h2>"
            + _table(["collection", "plots", "area ha", "LUC", "biogenic", "SOC", "removal", "net emission"],
                     rows) + '<p class="muted">tCO2e/yr; net = −LUC + biogenic + SOC − removal</p>')


def _imagery(summary: dict[str, Any]) -> str:
    out = ""
    if "sentinelhub" in summary:
        sh = summary["sentinelhub"]
        dates = ", ".join(sh["clear_dates"]) or "none"
        out += (f"<h2>Sentinel Hub {escape(sh['collection'])}: {_num(sh['count'])} scenes</h2>"
                f"<p>{_num(sh['clear_count'])} with cloud cover ≤ {_num(sh['cloud_cover_max'], 0)} %, on: "
                f"{escape(dates)}</p>")
    if "spaceknow" in summary:
        sk = summary["spaceknow"]
        rows = [[escape(k), _num(v["count"]), escape(str(v["first"] or "")), escape(str(v["last"] or ""))]
                for k, v in sk["by_dataset"].items()]
        out += (f"<h2>SpaceKnow scenes: {_num(sk['count'])}</h2>"
                + _table(["dataset", "scenes", "first", "last"], rows, left=1))
    return out


def _status(summary: dict[str, Any]) -> str:
    rows = [[escape(b["title"]), escape(name), escape(s["status"]), escape(str(s.get("error") or ""))]
            for b in summary["upstreams"].values() for name, s in b["sections"].items()]
    warn = ""
    if summary["partial"]:
        warn = (f'<p class="warn">Partial answer: {escape(", ".join(summary["failed"]))} failed; their sections '
                "are left out.</p>")
    return warn + _table(["upstream", "section", "status", "error"], rows, left=4)


def render(summary: dict[str, Any], features: list[dict[str, Any]]) -> str:
    area = summary["area"]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>Emissions inventory</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Emissions inventory</h1>",
        f"<p>{_num(area['km2'])} km², {escape(summary['datetime'])}, gases {escape(', '.join(summary['gases']))}"
        "</p>",
        _status(summary),
        "<h2>Map</h2>", map_svg(summary, features),
        "<h2>Plume emissions by sector</h2>", chart_svg(summary),
    ]
    if "plumes" in summary:
        parts.append(_plumes(summary))
    if "sources" in summary:
        parts.append(_sources(summary))
    if "plots" in summary:
        parts.append(_plots(summary))
    parts += [_imagery(summary), "</body></html>"]
    return "".join(parts)
