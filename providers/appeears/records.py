"""The one mapping of AppEEARS records: products → STAC collections, task/status → job progress, bundle files
→ OGC result links. Both faces (the STAC bridge, the `appeears-extract` process) read AppEEARS only through this.

AppEEARS has no items (a product is extracted on demand through `appeears-extract`, not browsed item by item),
so there is no `to_feature`/`to_item`: its collections are metadata only.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from dateutil import parser as dateparser

from geofed.collection import Collection
from geofed.jobs.protocol import JobProgress
from geofed.query import instant, rfc3339

COLLECTION_PREFIX = "appeears:"
APPEEARS_HOME = "https://appeears.earthdatacloud.nasa.gov"
SCIENTIFIC = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json"
# Bundle `file_type` → media type (the doc lists tif, json, xml, txt; point bundles add csv, netCDF-4 output nc).
MEDIA_TYPES: dict[str, str] = {
    "tif": "image/tiff; application=geotiff",
    "nc": "application/x-netcdf",
    "csv": "text/csv",
    "json": "application/json",
    "xml": "application/xml",
    "txt": "text/plain",
}


def collection_id(product_and_version: str) -> str:
    return f"{COLLECTION_PREFIX}{product_and_version}"


def product_id(collection: str) -> str | None:
    """The ProductAndVersion of a federated collection id, or None when it is not an AppEEARS one."""
    if not collection.startswith(COLLECTION_PREFIX):
        return None
    return collection[len(COLLECTION_PREFIX):] or None


def parse_extent_date(text: Any, end: bool = False) -> dt.datetime | None:
    """`TemporalExtentStart`/`End` are free text: `2000`, `2000-01-01`, `January 19, 2012`, `Present`."""
    value = str(text or "").strip()
    if not value or value.lower() in ("present", "ongoing", "n/a"):
        return None
    if re.fullmatch(r"\d{4}", value):  # a bare year covers the whole year
        year = int(value)
        return dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC) if end else dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    iso = instant(value)
    if iso is not None:
        return iso.astimezone(dt.UTC)
    try:  # prose such as "January 19, 2012"
        parsed = dateparser.parse(value, default=dt.datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def resolution_m(text: Any) -> float | None:
    """`Resolution` such as `1000m` or `250 m` → metres (None for angular or unknown units)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(m|meters?|metres?)\s*", str(text or ""), re.IGNORECASE)
    return float(match.group(1)) if match else None


def to_collection(product: dict[str, Any], layers: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """A product as a metadata-only STAC 1.1 collection `appeears:<ProductAndVersion>` (a dict, without
    self/root links: the STAC bridge adds those), rendered from its one `Collection` declaration."""
    pav = str(product["ProductAndVersion"])
    summaries: dict[str, Any] = {}
    if product.get("Platform"):
        summaries["platform"] = [product["Platform"]]
    gsd = resolution_m(product.get("Resolution"))
    if gsd is not None:
        summaries["gsd"] = [gsd]
    if layers:
        # the layer names a task may ask for: those the listing does not mark unavailable
        summaries["appeears:layers"] = sorted(k for k, v in layers.items()
                                              if not (isinstance(v, dict) and v.get("Available") is False))
        summaries["appeears:units"] = sorted({str(v.get("Units")) for v in layers.values() if v.get("Units")})
    links: list[dict[str, Any]] = []
    if product.get("DocLink"):
        links.append({"rel": "describedby", "href": str(product["DocLink"]), "type": "text/html",
                      "title": "Product documentation"})
    extensions: tuple[str, ...] = ()
    extra: dict[str, Any] = {
        "appeears:product_and_version": pav,
        "appeears:temporal_granularity": product.get("TemporalGranularity"),
        "appeears:raster_type": product.get("RasterType"),
        "appeears:available": bool(product.get("Available", True)),
    }
    if product.get("DOI"):
        doi = str(product["DOI"])
        links.append({"rel": "cite-as", "href": f"https://doi.org/{doi}"})
        extensions = (SCIENTIFIC,)
        extra["sci:doi"] = doi
    collection = Collection(
        id=collection_id(pav),
        title=f"{product.get('Product', pav)} v{product.get('Version', '')}: {product.get('Description', '')}".strip(),
        description=(
            f"{product.get('Description', pav)} ({product.get('Platform', 'unknown platform')}, "
            f"{product.get('Resolution', 'n/a')}, {product.get('TemporalGranularity', 'n/a')}), "
            f"from {product.get('Source', 'NASA')}. Available for area and point extraction through the "
            "`appeears-extract` process; this collection holds no items."
        ),
        keywords=tuple(str(k) for k in ("AppEEARS", product.get("Platform"), product.get("Source")) if k),
        license="other",
        providers=(
            {"name": str(product.get("Source") or "NASA"), "roles": ["producer"]},
            {"name": "NASA AppEEARS", "roles": ["processor", "host"], "url": APPEEARS_HOME},
        ),
        interval=(rfc3339(parse_extent_date(product.get("TemporalExtentStart"))),
                  rfc3339(parse_extent_date(product.get("TemporalExtentEnd"), end=True))),
        links=tuple(links),
        stac_extensions=extensions,
        summaries=summaries,
    )
    return {**collection.stac(), **extra}


# ----------------------------------------------------------------- task status → job progress
def job_progress(http_status: int, status: dict[str, Any], task: dict[str, Any] | None) -> JobProgress:
    """OGC job status from `GET /status/{id}` (303 = done) and, when that is not decisive, `GET /task/{id}`:
    pending → accepted, processing → running (`progress.summary`), done → successful, error → failed."""
    summary = (status.get("progress") or {}).get("summary")
    progress = int(summary) if isinstance(summary, int | float) else None
    state = "done" if http_status == 303 else (task or {}).get("status") or status.get("status")
    if state == "done":
        return JobProgress("successful", 100, "AppEEARS task done")
    if state == "error":
        return JobProgress("failed", progress, f"AppEEARS task failed: {(task or {}).get('error') or 'unknown error'}")
    if state == "processing":
        step = _current_step(status)
        return JobProgress("running", progress, f"AppEEARS task processing{f': {step}' if step else ''}")
    return JobProgress("accepted", 0, "AppEEARS task pending (waiting for resources)")


def _current_step(status: dict[str, Any]) -> str | None:
    for detail in (status.get("progress") or {}).get("details") or []:
        if isinstance(detail, dict) and (detail.get("pct_complete") or 0) < 100:
            return str(detail.get("desc"))
    return None


# ----------------------------------------------------------------- bundle → OGC results
def media_type(file_type: str | None, file_name: str = "") -> str:
    kind = (file_type or file_name.rsplit(".", 1)[-1]).lower()
    return MEDIA_TYPES.get(kind, "application/octet-stream")


def file_name(raw: str) -> str:
    """Bundle names may carry a Windows sub-directory (`MOD11A1.061_2020001_to_2020017\\x.tif`)."""
    return raw.replace("\\", "/")


def results_document(bundle: dict[str, Any], results_url: str) -> dict[str, Any]:
    """The OGC results of a finished task: one link per bundle file, served by geofed (never by AppEEARS)."""
    files = []
    for f in bundle.get("files") or []:
        files.append({
            "href": f"{results_url}/files/{f['file_id']}",
            "rel": "enclosure",
            "type": media_type(f.get("file_type"), f.get("file_name", "")),
            "title": file_name(str(f.get("file_name", f["file_id"]))),
            "file_id": f["file_id"],
            "size": f.get("file_size"),
            "sha256": f.get("sha256"),
        })
    return {"files": files, "bundle_type": bundle.get("bundle_type")}


def bundle_file(bundle: dict[str, Any], file_id: str) -> dict[str, Any] | None:
    return next((f for f in bundle.get("files") or [] if f.get("file_id") == file_id), None)
