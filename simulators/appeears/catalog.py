"""The simulated AppEEARS catalog: real product names with their layers, and the documented projections."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# ProductAndVersion → (Platform, Description, Resolution, TemporalGranularity, start, end, Source, layers);
# layer = (name, units, data type). Real AppEEARS products, a subset of the catalog, with AppEEARS' own layer names
# (the VI layers start with an underscore: `_250m_16_days_NDVI`).
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
                    "LP DAAC", [("_250m_16_days" + n, u, t) for n, u, t in _VI]),
    "MYD13Q1.061": (_AQUA, "Vegetation Indices (NDVI & EVI)", "250m", "16 day", "2002-07-04", "Present",
                    "LP DAAC", [("_250m_16_days" + n, u, t) for n, u, t in _VI]),
    "MOD13A1.061": (_TERRA, "Vegetation Indices (NDVI & EVI)", "500m", "16 day", "2000-02-18", "Present",
                    "LP DAAC", [("_500m_16_days" + n, u, t) for n, u, t in _VI]),
    "MOD13A2.061": (_TERRA, "Vegetation Indices (NDVI & EVI)", "1000m", "16 day", "2000-02-18", "Present",
                    "LP DAAC", [("_1_km_16_days" + n, u, t) for n, u, t in _VI]),
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
    "VNP21A1D.002": (_VIIRS, "Land Surface Temperature & Emissivity Day", "1000m", "Daily", "January 19, 2012",
                     "Present", "LP DAAC", [("LST_1KM", "Kelvin", "uint16"), ("QC", "None", "uint16"),
                                            ("Emis_14", "None", "uint8")]),
    "VNP13A1.002": (_VIIRS, "Vegetation Indices (NDVI & EVI)", "500m", "16 day", "2012-01-17", "Present",
                    "LP DAAC", [("_500_m_16_days_NDVI", "NDVI", "int16"), ("_500_m_16_days_EVI", "EVI", "int16")]),
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
    "GPW_UN_Adj_PopCount.411": ("GPW", "UN-adjusted Population Count", "1000m", "Quinquennial", "2000", "2020",
                                "SEDAC", [("Population_Count", "Persons", "float32")]),
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


def product_record(pid: str) -> dict[str, Any]:
    platform, desc, res, gran, start, end, source, _ = PRODUCTS[pid]
    name, version = pid.rsplit(".", 1)
    doi = f"10.5067/{name.split('_')[0]}.{version}" if source != "SEDAC" else "10.7927/H4JW8BX5"
    return {"Product": name, "Platform": platform, "Description": desc, "RasterType": "Tile", "Resolution": res,
            "TemporalGranularity": gran, "Version": version, "Available": True, "DocLink": f"https://doi.org/{doi}",
            "Source": source, "TemporalExtentStart": start, "TemporalExtentEnd": end, "Deleted": False,
            "DOI": doi, "ProductAndVersion": pid}


def layer_records(pid: str, unavailable: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """The layers of a product; those named `PRODUCT/LAYER` in `unavailable` are marked `"Available": false`."""
    out = {}
    for name, units, dtype in PRODUCTS[pid][7]:
        is_qc = units == "None"
        out[name] = {"AddOffset": "", "Available": f"{pid}/{name}" not in unavailable, "DataType": dtype,
                     "Description": name.strip("_").replace("_", " "),
                     "Dimensions": ["time", "lat", "lon"], "FillValue": 0 if is_qc else -3000, "Layer": name,
                     "OrigDataType": dtype, "OrigValidMax": 255 if is_qc else 10000, "OrigValidMin": 0,
                     "QualityLayers": "" if is_qc else "['QC']", "QualityProductAndVersion": "" if is_qc else pid,
                     "ScaleFactor": "" if is_qc else 0.02, "Units": units, "ValidMax": 255 if is_qc else 10000,
                     "ValidMin": 0, "XSize": 1200, "YSize": 1200}
    return out
