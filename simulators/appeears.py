"""NASA AppEEARS API simulator (contract: ../shared/upstreams/docs/appeears-api.txt).

Serves login/logout (HTTP Basic → Bearer, 403 once expired), the product catalog with ETag/Last-Modified
revalidation, `/spatial/proj`, tasks (JSON body and/or query string; the query string wins), task status
(303 when done), bundles and streamed bundle files whose sha256 is right.

Tasks move pending → processing → done on the clock: `pending_seconds`, then `task_seconds` of processing
through the five documented steps. A task whose dates lie before a product's temporal extent ends in `error`
(the doc is silent on when AppEEARS rejects such dates; here the task fails while processing, as a real
extraction that finds no granules does). Where the doc is silent we pick one behaviour, configurable at
`create_app(**config)` or at run time through `POST /_sim/config`:
- `download_redirect` (default false): `/bundle/{id}/{file}` answers 302 to a storage URL, as `curl --location`
  in the doc hints;
- a missing Authorization header answers 401, an unknown or expired token 403 (the documented expiry signal);
- `/status/{id}` of a task in `error` answers 200 with `"status": "error"`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from base64 import b64decode
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from simulators.framework import SimulatorState, chunked, create_simulator_app

# ProductAndVersion → (Platform, Description, Resolution, TemporalGranularity, start, end, Source, layers);
# layer = (name, units, data type). Real AppEEARS products, a subset of the catalog.
_TERRA, _AQUA, _COMB = "Terra MODIS", "Aqua MODIS", "Combined MODIS"
_VIIRS, _LST = "S-NPP NASA VIIRS", [("LST_Day_1km", "Kelvin", "uint16"), ("LST_Night_1km", "Kelvin", "uint16"),
                                    ("QC_Day", "None", "uint8"), ("QC_Night", "None", "uint8")]
_VI = [("_NDVI", "NDVI", "int16"), ("_EVI", "EVI", "int16"), ("_VI_Quality", "None", "uint16")]
PRODUCTS: dict[str, tuple[str, str, str, str, str, str, str, list[tuple[str, str, str]]]] = {
    "MOD11A1.061": (_TERRA, "Land Surface Temperature & Emissivity (LST&E) Daily", "1000m", "Daily",
                    "2000-02-24", "Present", "LP DAAC", _LST),
    "MYD11A1.061": (_AQUA, "Land Surface Temperature & Emissivity (LST&E) Daily", "1000m", "Daily",
                    "2002-07-04", "Present", "LP DAAC", _LST),
    "MOD11A2.061": (_TERRA, "Land Surface Temperature & Emissivity (LST&E) 8-Day", "1000m", "8 day",
                    "2000-03-05", "Present", "LP DAAC", _LST),
    "MYD11A2.061": (_AQUA, "Land Surface Temperature & Emissivity (LST&E) 8-Day", "1000m", "8 day",
                    "2002-07-04", "Present", "LP DAAC", _LST),
    "MOD13Q1.061": (_TERRA, "Vegetation Indices (NDVI & EVI)", "250m", "16 day", "2000-02-18", "Present",
                    "LP DAAC", [("250m_16_days" + n, u, t) for n, u, t in _VI]),
    "MYD13Q1.061": (_AQUA, "Vegetation Indices (NDVI & EVI)", "250m", "16 day", "2002-07-04", "Present",
                    "LP DAAC", [("250m_16_days" + n, u, t) for n, u, t in _VI]),
    "MOD13A1.061": (_TERRA, "Vegetation Indices (NDVI & EVI)", "500m", "16 day", "2000-02-18", "Present",
                    "LP DAAC", [("500m_16_days" + n, u, t) for n, u, t in _VI]),
    "MOD13A2.061": (_TERRA, "Vegetation Indices (NDVI & EVI)", "1000m", "16 day", "2000-02-18", "Present",
                    "LP DAAC", [("1_km_16_days" + n, u, t) for n, u, t in _VI]),
    "MOD09A1.061": (_TERRA, "Surface Reflectance Bands 1-7", "500m", "8 day", "2000-02-18", "Present", "LP DAAC",
                    [(f"sur_refl_b0{i}", "Reflectance", "int16") for i in range(1, 8)] + [("sur_refl_qc_500m",
                                                                                          "None", "uint32")]),
    "MOD09GA.061": (_TERRA, "Surface Reflectance Bands 1-7", "500m", "Daily", "2000-02-24", "Present", "LP DAAC",
                    [(f"sur_refl_b0{i}_1", "Reflectance", "int16") for i in range(1, 8)]),
    "MOD15A2H.061": (_TERRA, "Leaf Area Index (LAI) and Fraction of Photosynthetically Active Radiation (FPAR)",
                     "500m", "8 day", "2002-07-04", "Present", "LP DAAC",
                     [("Lai_500m", "m^2/m^2", "uint8"), ("Fpar_500m", "Percent", "uint8"),
                      ("FparLai_QC", "None", "uint8")]),
    "MCD15A3H.061": (_COMB, "Leaf Area Index (LAI) and Fraction of Photosynthetically Active Radiation (FPAR)",
                     "500m", "4 day", "2002-07-04", "Present", "LP DAAC",
                     [("Lai_500m", "m^2/m^2", "uint8"), ("Fpar_500m", "Percent", "uint8")]),
    "MOD16A2.061": (_TERRA, "Evapotranspiration (ET & LE)", "500m", "8 day", "2001-01-01", "Present", "LP DAAC",
                    [("ET_500m", "kg/m^2/8day", "int16"), ("LE_500m", "J/m^2/day", "int16"),
                     ("ET_QC_500m", "None", "uint8")]),
    "MOD17A2H.061": (_TERRA, "Gross Primary Productivity (GPP)", "500m", "8 day", "2000-02-18", "Present",
                     "LP DAAC", [("Gpp_500m", "kg C/m^2/8day", "int16"), ("PsnNet_500m", "kg C/m^2/8day", "int16"),
                                 ("Psn_QC_500m", "None", "uint8")]),
    "MCD12Q1.061": (_COMB, "Land Cover Type (LC)", "500m", "Yearly", "2001-01-01", "2022-12-31", "LP DAAC",
                    [(f"LC_Type{i}", "Class", "uint8") for i in range(1, 6)] + [("QC", "None", "uint8")]),
    "MCD43A4.061": (_COMB, "Nadir BRDF-Adjusted Reflectance (NBAR)", "500m", "Daily", "2000-02-16", "Present",
                    "LP DAAC", [(f"Nadir_Reflectance_Band{i}", "Reflectance", "int16") for i in range(1, 8)]),
    "MCD64A1.061": (_COMB, "Burned Area (fire)", "500m", "Monthly", "2000-11-01", "Present", "LP DAAC",
                    [("Burn_Date", "Julian day", "int16"), ("Burn_Date_Uncertainty", "days", "uint8"),
                     ("QA", "None", "uint8")]),
    "MOD10A1.061": (_TERRA, "Snow Cover Daily", "500m", "Daily", "2000-02-24", "Present", "NSIDC DAAC",
                    [("NDSI_Snow_Cover", "Percent", "uint8"), ("NDSI_Snow_Cover_Basic_QA", "None", "uint8")]),
    "MOD44B.061": (_TERRA, "Vegetation Continuous Fields (VCF)", "250m", "Yearly", "2000-03-05", "2023-03-06",
                   "LP DAAC", [("Percent_Tree_Cover", "Percent", "uint8"), ("Percent_NonTree_Vegetation",
                                                                            "Percent", "uint8")]),
    "MOD14A2.061": (_TERRA, "Thermal Anomalies and Fire", "1000m", "8 day", "2000-02-18", "Present", "LP DAAC",
                    [("FireMask", "Class", "uint8"), ("QA", "None", "uint8")]),
    "VNP21A1D.002": (_VIIRS, "Land Surface Temperature & Emissivity Day", "1000m", "Daily", "2012-01-19",
                     "Present", "LP DAAC", [("LST_1KM", "Kelvin", "uint16"), ("QC", "None", "uint16"),
                                            ("Emis_14", "None", "uint8")]),
    "VNP13A1.002": (_VIIRS, "Vegetation Indices (NDVI & EVI)", "500m", "16 day", "2012-01-17", "Present",
                    "LP DAAC", [("500_m_16_days_NDVI", "NDVI", "int16"), ("500_m_16_days_EVI", "EVI", "int16")]),
    "VNP09A1.002": (_VIIRS, "Surface Reflectance 8-Day L3 Global 1km SIN Grid", "1000m", "8 day",
                    "2012-01-17", "Present", "LP DAAC", [(f"SurfReflect_M{i}", "Reflectance", "int16")
                                                         for i in (1, 2, 3, 4, 5, 7, 8, 10, 11)]),
    "VNP15A2H.002": (_VIIRS, "Leaf Area Index (LAI) and FPAR", "500m", "8 day", "2012-01-17", "Present",
                     "LP DAAC", [("Lai", "m^2/m^2", "uint8"), ("Fpar", "Percent", "uint8")]),
    "SRTMGL1_NC.003": ("SRTM", "Elevation (DEM)", "30m", "Static", "2000-02-11", "2000-02-21", "LP DAAC",
                       [("SRTMGL1_DEM", "Meters", "int16")]),
    "SRTMGL3_NC.003": ("SRTM", "Elevation (DEM)", "90m", "Static", "2000-02-11", "2000-02-21", "LP DAAC",
                       [("SRTMGL3_DEM", "Meters", "int16")]),
    "NASADEM_NC.001": ("NASADEM", "Elevation", "30m", "Static", "2000-02-11", "2000-02-21", "LP DAAC",
                       [("NASADEM_HGT", "Meters", "int16"), ("NASADEM_NUM", "None", "uint8")]),
    "ASTGTM_NC.003": ("ASTER GDEM", "Elevation", "30m", "Static", "2000-03-01", "2013-11-30", "LP DAAC",
                      [("ASTER_GDEM_DEM", "Meters", "int16")]),
    "ECO2LSTE.001": ("ECOSTRESS", "Land Surface Temperature & Emissivity (LST&E)", "70m", "ISS-dependent",
                     "2018-07-09", "Present", "LP DAAC", [("SDS_LST", "Kelvin", "uint16"),
                                                          ("SDS_QC", "None", "uint16")]),
    "HLSL30.020": ("Landsat 8/9 OLI", "HLS Operational Land Imager Surface Reflectance", "30m", "16 day",
                   "2013-04-11", "Present", "LP DAAC", [(f"B{i:02d}", "Reflectance", "int16") for i in range(1, 8)]),
    "HLSS30.020": ("Sentinel-2 MSI", "HLS Sentinel-2 MSI Surface Reflectance", "30m", "5 day", "2015-11-28",
                   "Present", "LP DAAC", [(f"B{i:02d}", "Reflectance", "int16") for i in range(1, 9)]),
    "DAYMET.004": ("DAYMET", "Daily Surface Weather Data for North America", "1000m", "Daily", "1980-01-01",
                   "2022-12-31", "ORNL DAAC", [("prcp", "mm/day", "float32"), ("tmax", "degrees C", "float32"),
                                               ("tmin", "degrees C", "float32")]),
    "SPL3SMP_E.005": ("SMAP", "Enhanced L3 Radiometer Soil Moisture", "9000m", "Daily", "2015-03-31", "Present",
                      "NSIDC DAAC", [("Soil_Moisture_Retrieval_Data_AM_soil_moisture", "cm^3/cm^3", "float32")]),
    "GPW_UN_Adj_PopCount.411": ("GPW", "UN-adjusted Population Count", "1000m", "Quinquennial", "2000-01-01",
                                "2020-12-31", "SEDAC", [("Population_Count", "Persons", "float32")]),
}
PROJECTIONS = [
    {"Name": "native", "Description": "Native Projection", "Proj4": "", "Datum": "", "EPSG": "", "Units": "",
     "GridMapping": ""},
    {"Name": "geographic", "Description": "Geographic", "Proj4": "+proj=longlat +datum=WGS84 +no_defs",
     "Datum": "wgs84", "EPSG": 4326.0, "Units": "degrees", "GridMapping": "latitude_longitude"},
    {"Name": "sinu_modis", "Description": "MODIS Sinusoidal",
     "Proj4": "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +a=6371007.181 +b=6371007.181 +units=m +no_defs", "Datum": "",
     "EPSG": "", "Units": "meters", "GridMapping": "sinusoidal"},
    {"Name": "albers_weld_alaska", "Description": "WELD Albers Equal Area Alaska",
     "Proj4": "+proj=aea +lat_1=55 +lat_2=65 +lat_0=50 +lon_0=-154 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs",
     "Datum": "wgs84", "EPSG": "", "Units": "meters", "GridMapping": "albers_conical_equal_area"},
    {"Name": "albers_weld_conus", "Description": "WELD Albers Equal Area CONUS",
     "Proj4": "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs",
     "Datum": "wgs84", "EPSG": "", "Units": "meters", "GridMapping": "albers_conical_equal_area"},
    {"Name": "easegrid_2_global", "Description": "EASE-Grid 2.0 Global",
     "Proj4": "+proj=cea +lon_0=0 +lat_ts=30 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs", "Datum": "wgs84",
     "EPSG": 6933.0, "Units": "meters", "GridMapping": "lambert_azimuthal_equal_area"},
]
STEPS = ("Initializing", "Downloading", "Generating Files", "Extracting Stats", "Finalizing")
STEP_WEIGHTS = (5, 15, 45, 20, 15)  # share of the summary each step carries (sums to 100)
LAST_MODIFIED = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
CONTENT_TYPES = {"tif": "image/tiff", "nc": "application/x-netcdf", "csv": "text/csv", "json": "application/json",
                 "xml": "application/xml", "txt": "text/plain"}
_DEFAULTS = {"task_seconds": 3.0, "pending_seconds": 0.5, "download_redirect": False}


def product_record(pid: str) -> dict[str, Any]:
    platform, desc, res, gran, start, end, source, _ = PRODUCTS[pid]
    name, version = pid.rsplit(".", 1)
    doi = f"10.5067/{name.split('_')[0]}.{version}" if source != "SEDAC" else "10.7927/H4JW8BX5"
    return {"Product": name, "Platform": platform, "Description": desc, "RasterType": "Tile", "Resolution": res,
            "TemporalGranularity": gran, "Version": version, "Available": True, "DocLink": f"https://doi.org/{doi}",
            "Source": source, "TemporalExtentStart": start, "TemporalExtentEnd": end, "Deleted": False,
            "DOI": doi, "ProductAndVersion": pid}


def layer_records(pid: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name, units, dtype in PRODUCTS[pid][7]:
        is_qc = units == "None"
        out[name] = {"AddOffset": "", "Available": True, "DataType": dtype, "Description": name.replace("_", " "),
                     "Dimensions": ["time", "lat", "lon"], "FillValue": 0 if is_qc else -3000, "Layer": name,
                     "OrigDataType": dtype, "OrigValidMax": 255 if is_qc else 10000, "OrigValidMin": 0,
                     "QualityLayers": "" if is_qc else "['QC']", "QualityProductAndVersion": "" if is_qc else pid,
                     "ScaleFactor": "" if is_qc else 0.02, "Units": units, "ValidMax": 255 if is_qc else 10000,
                     "ValidMin": 0, "XSize": 1200, "YSize": 1200}
    return out


def _message(text: str, status: int) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


def _now_naive() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class Task:
    task_id: str
    user_id: str
    body: dict[str, Any]
    submitted: float
    created: str
    error: str | None = None  # the message the task will fail with (decided at submit)
    files: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, bytes] = field(default_factory=dict)


class AppeearsSim:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.tasks: dict[str, Task] = {}

    # ------------------------------------------------------------------ helpers
    def cfg(self, key: str) -> Any:
        return self.state.config[key]

    def user(self, request: Request) -> tuple[str | None, Response | None]:
        if not request.headers.get("authorization"):
            return None, _message("The server could not verify that you are authorized to access the URL "
                                  "requested.", 401)
        token = self.state.tokens.check_request(request)
        if token is None:  # documented expiry signal
            return None, _message("You don't have the permission to access the requested resource. It is either "
                                  "read-protected or not readable by the server.", 403)
        return token.subject, None

    def status_of(self, task: Task) -> tuple[str, int]:
        """(status, summary %) from the clock."""
        elapsed = time.time() - task.submitted - float(self.cfg("pending_seconds"))
        if elapsed < 0:
            return "pending", 0
        pct = min(100, int(100 * elapsed / max(float(self.cfg("task_seconds")), 0.001)))
        if pct >= 100:
            return ("error", 45) if task.error else ("done", 100)
        return "processing", pct

    def progress(self, summary: int) -> dict[str, Any]:
        details, floor = [], 0
        for step, (desc, weight) in enumerate(zip(STEPS, STEP_WEIGHTS, strict=True), start=1):
            done = min(max(summary - floor, 0), weight)
            details.append({"step": step, "desc": desc, "pct_complete": round(100 * done / weight)})
            floor += weight
        return {"summary": summary, "details": details}

    def task_json(self, task: Task) -> dict[str, Any]:
        status, _ = self.status_of(task)
        return {"attempts": 1, "created": task.created, "error": task.error if status == "error" else None,
                "params": task.body["params"], "retry_at": None, "status": status, "svc_version": "3.65",
                "task_id": task.task_id, "task_name": task.body["task_name"], "task_type": task.body["task_type"],
                "updated": _now_naive(), "user_id": task.user_id, "web_version": "3.65"}

    def owned(self, request: Request, user: str) -> Task | None:
        task = self.tasks.get(request.path_params["task_id"])
        return task if task is not None and task.user_id == user else None

    # ------------------------------------------------------------------ auth
    async def login(self, request: Request) -> Response:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = b64decode(raw).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
        except ValueError:
            user, password = "", ""
        creds = self.state.credentials
        if user != creds.get("username") or password != creds.get("password"):
            return _message("The server could not verify that you are authorized to access the URL requested.  You "
                            "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
                            "understand how to supply the credentials required.", 401)
        token = self.state.tokens.issue(user if "@" in user else f"{user}@example.com", prefix="aeq")
        expiration = dt.datetime.fromtimestamp(token.expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return JSONResponse({"token_type": "Bearer", "token": token.value, "expiration": expiration})

    async def logout(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        self.state.tokens.revoke(request.headers["authorization"].partition(" ")[2].strip())
        return Response(status_code=204)

    # ------------------------------------------------------------------ catalog
    def conditional(self, request: Request, payload: Any) -> Response:
        body = json.dumps(payload).encode()
        etag = f'"lpdms-{hashlib.sha1(body).hexdigest()[:24]}"'
        headers = {"ETag": etag, "Last-Modified": format_datetime(LAST_MODIFIED, usegmt=True),
                   "Cache-Control": "private, no-transform, must-revalidate, max-age=0",
                   "Expires": format_datetime(dt.datetime.now(dt.UTC), usegmt=True)}
        inm = request.headers.get("if-none-match")
        ims = request.headers.get("if-modified-since")
        if inm is not None:
            if etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
                return Response(status_code=304, headers=headers)
        elif ims:
            try:
                if parsedate_to_datetime(ims) >= LAST_MODIFIED:
                    return Response(status_code=304, headers=headers)
            except (TypeError, ValueError):
                pass
        return Response(body, media_type="application/json", headers=headers)

    @staticmethod
    def page(request: Request, rows: list[Any]) -> list[Any] | Response:
        try:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params["limit"]) if "limit" in request.query_params else None
        except ValueError:
            return _message("'limit' and 'offset' must be integers", 400)
        if offset < 0 or (limit is not None and limit < 1):
            return _message("'limit' must be positive and 'offset' not negative", 400)
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    async def products(self, request: Request) -> Response:
        rows = self.page(request, [product_record(p) for p in PRODUCTS])
        return rows if isinstance(rows, Response) else self.conditional(request, rows)

    async def product(self, request: Request) -> Response:
        pid = request.path_params["product_id"]
        if pid not in PRODUCTS:
            return _message(f"Product '{pid}' could not be found", 404)
        return self.conditional(request, layer_records(pid))

    async def projections(self, request: Request) -> Response:
        return self.conditional(request, PROJECTIONS)

    # ------------------------------------------------------------------ tasks
    async def submit(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        from simulators.appeears_tasks import merge_query, validate

        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _message("The request body is not valid JSON", 400)
        if not isinstance(body, dict):
            return _message("The task must be a JSON object", 400)
        body = merge_query(body, request.query_params.multi_items())
        problem, error = validate(body, PRODUCTS, {p["Name"] for p in PROJECTIONS})
        if problem:
            return _message(problem, 400)
        task_id = str(uuid.UUID(int=self.state.rng(f"task:{len(self.tasks)}:{time.time()}").getrandbits(128),
                                version=4))
        assert user is not None
        self.tasks[task_id] = Task(task_id, user, body, time.time(), _now_naive(), error)
        return JSONResponse({"task_id": task_id, "status": "pending"}, status_code=202,
                            headers={"Location": f"/status/{task_id}"})

    async def list_tasks(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        rows = [self.task_json(t) for t in sorted(self.tasks.values(), key=lambda t: -t.submitted)
                if t.user_id == user]
        for key in ("status", "task_type"):
            if key in request.query_params:
                rows = [r for r in rows if r[key] == request.query_params[key]]
        page = self.page(request, rows)
        return page if isinstance(page, Response) else JSONResponse(page)

    async def task(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        assert user is not None
        task = self.owned(request, user)
        if task is None:
            return _message(f"Task '{request.path_params['task_id']}' could not be found", 404)
        if request.method == "DELETE":
            del self.tasks[task.task_id]
            return Response(status_code=204)
        return JSONResponse(self.task_json(task))

    def status_json(self, task: Task) -> dict[str, Any]:
        status, summary = self.status_of(task)
        body = {"task_id": task.task_id, "user_id": task.user_id, "status_id": str(uuid.uuid5(
            uuid.NAMESPACE_URL, task.task_id)), "status_type": "task", "updated": _now_naive(),
            "progress": self.progress(summary)}
        if status == "error":
            body["status"] = "error"
        return body

    async def statuses(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        return JSONResponse([self.status_json(t) for t in self.tasks.values()
                             if t.user_id == user and self.status_of(t)[0] in ("pending", "processing")])

    async def status(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        assert user is not None
        task = self.owned(request, user)
        if task is None:
            return _message(f"Task '{request.path_params['task_id']}' could not be found", 404)
        if self.status_of(task)[0] == "done":
            return JSONResponse({"task_id": task.task_id, "status": "done", "user_id": task.user_id,
                                 "updated": _now_naive(), "status_type": "task"}, status_code=303,
                                headers={"Location": f"/task/{task.task_id}"})
        return JSONResponse(self.status_json(task))

    # ------------------------------------------------------------------ bundles (public)
    def done_task(self, request: Request) -> Task | None:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or self.status_of(task)[0] != "done":
            return None
        if not task.files:
            from simulators.appeears_tasks import bundle_files

            for meta, content in bundle_files(task.body, self.state.rng(f"bundle:{task.task_id}")):
                task.files.append(meta)
                task.content[meta["file_id"]] = content
        return task

    async def bundle(self, request: Request) -> Response:
        task = self.done_task(request)
        if task is None:
            return _message(f"Bundle for task '{request.path_params['task_id']}' could not be found", 404)
        return JSONResponse({"task_id": task.task_id, "files": task.files, "created": task.created,
                             "updated": task.created, "bundle_type": task.body["task_type"]})

    async def download(self, request: Request) -> Response:
        task = self.done_task(request)
        file_id = request.path_params["file_id"]
        meta = next((f for f in task.files if f["file_id"] == file_id), None) if task else None
        if task is None or meta is None:
            return _message(f"File '{file_id}' could not be found", 404)
        if self.cfg("download_redirect") and "stored" not in request.query_params:
            return RedirectResponse(f"{request.url.replace(query='stored=1')}", status_code=302)
        content = task.content[file_id]
        name = meta["file_name"].replace("\\", "/").rsplit("/", 1)[-1]
        chunks = [content[i:i + 4096] for i in range(0, len(content), 4096)]
        return StreamingResponse(chunked(self.state, chunks, request.url.path),
                                 media_type=CONTENT_TYPES.get(meta["file_type"], "application/octet-stream"),
                                 headers={"Content-Disposition": f'attachment; filename="{name}"',
                                          "Content-Length": str(len(content))})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            self.state.config.update({k: v for k, v in (await request.json()).items() if k in _DEFAULTS})
        elif request.method == "DELETE":
            self.state.config.update(self.state.config["defaults"])
        return JSONResponse({k: self.state.config[k] for k in _DEFAULTS})


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Starlette:
    """`config`: task_seconds, pending_seconds, download_redirect (defaults also from SIM_APPEEARS_* env)."""
    settings: dict[str, Any] = dict(_DEFAULTS)
    for key in ("task_seconds", "pending_seconds"):
        if f"SIM_APPEEARS_{key.upper()}" in os.environ:
            settings[key] = float(os.environ[f"SIM_APPEEARS_{key.upper()}"])
    settings.update({k: v for k, v in config.items() if k in _DEFAULTS})
    state = SimulatorState("appeears", seed=seed, credentials=credentials, token_ttl=48 * 3600,
                           config={**settings, "defaults": dict(settings)})
    sim = AppeearsSim(state)
    routes = [
        Route("/login", sim.login, methods=["POST"]),
        Route("/logout", sim.logout, methods=["POST"]),
        Route("/product", sim.products),
        Route("/product/{product_id}", sim.product),
        Route("/spatial/proj", sim.projections),
        Route("/task", sim.list_tasks, methods=["GET"]),
        Route("/task", sim.submit, methods=["POST"]),
        Route("/task/{task_id}", sim.task, methods=["GET", "DELETE"]),
        Route("/status", sim.statuses),
        Route("/status/{task_id}", sim.status),
        Route("/bundle/{task_id}", sim.bundle),
        Route("/bundle/{task_id}/{file_id}", sim.download),
        Route("/_sim/config", sim.config, methods=["GET", "POST", "DELETE"]),
    ]
    return create_simulator_app(state, routes)
