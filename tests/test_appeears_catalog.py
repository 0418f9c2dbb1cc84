"""AppEEARS products as STAC collections, catalog revalidation (ETag) and the simulator's own contract.

Expected values come from the simulator's catalog (`GET /product`, `GET /product/{id}`), read directly.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pystac_client import Client

from simulators import DEMO_CREDENTIALS


def sim_products(sims: Any) -> dict[str, dict[str, Any]]:
    return {p["ProductAndVersion"]: p for p in sims.get("appeears", "/product").json()}


# ----------------------------------------------------------------- STAC face
def test_every_product_is_a_valid_metadata_only_stac_collection(geofed: Any, sims: Any, stac_validate: Any) -> None:
    products = sim_products(sims)
    client = Client.open(f"{geofed.url}/stac/", timeout=60)
    ids = {c.id for c in client.get_collections() if c.id.startswith("appeears:")}
    assert ids == {f"appeears:{pid}" for pid in products}
    for pid in ("MOD11A1.061", "VNP21A1D.002", "GPW_UN_Adj_PopCount.411"):
        body = geofed.get(f"/stac/collections/appeears:{pid}").json()
        assert stac_validate(body) == []  # core and extension schemas, from the repository's offline mirror
        product = products[pid]
        layers = sims.get("appeears", f"/product/{pid}").json()
        assert body["description"].startswith(product["Description"])
        assert product["Description"] in body["title"]
        assert body["summaries"]["appeears:layers"] == sorted(layers)
        assert body["summaries"]["platform"] == [product["Platform"]]
        assert body["summaries"]["gsd"] == [float(product["Resolution"].rstrip("m"))]
        assert body["sci:doi"] == product["DOI"]
        rels = {link["rel"]: link["href"] for link in body["links"]}
        assert rels["describedby"] == product["DocLink"]
        assert rels["cite-as"] == f"https://doi.org/{product['DOI']}"
        assert rels["self"].startswith(f"{geofed.url}/stac/collections/")


@pytest.mark.parametrize(
    ("pid", "interval"),
    [
        ("MOD11A1.061", ["2000-02-24T00:00:00Z", None]),  # "2000-02-24" .. "Present"
        ("VNP21A1D.002", ["2012-01-19T00:00:00Z", None]),  # "January 19, 2012" .. "Present"
        ("GPW_UN_Adj_PopCount.411", ["2000-01-01T00:00:00Z", "2020-12-31T23:59:59Z"]),  # "2000" .. "2020"
    ],
)
def test_temporal_extent_comes_from_the_free_text_product_dates(geofed: Any, sims: Any, pid: str,
                                                                 interval: list[str | None]) -> None:
    product = sim_products(sims)[pid]
    assert (product["TemporalExtentStart"], product["TemporalExtentEnd"]) in (
        ("2000-02-24", "Present"), ("January 19, 2012", "Present"), ("2000", "2020"))
    body = geofed.get(f"/stac/collections/appeears:{pid}").json()
    assert body["extent"]["temporal"]["interval"] == [interval]


def test_collection_search_finds_products_and_item_search_is_empty(geofed: Any, sims: Any) -> None:
    found = geofed.get("/stac/collections", params={"q": "Land Surface Temperature", "datetime": "2005-06-01T00:00:00Z",
                                                    "limit": 100}).json()
    ids = {c["id"] for c in found["collections"]}
    lst = {f"appeears:{pid}" for pid, p in sim_products(sims).items() if "Land Surface Temperature" in
           p["Description"]}
    assert "appeears:MOD11A1.061" in ids
    assert "appeears:VNP21A1D.002" not in ids  # starts in 2012
    assert ids & lst == {c for c in lst if c not in ("appeears:VNP21A1D.002", "appeears:ECO2LSTE.001")}
    search = geofed.get("/stac/search", params={"collections": "appeears:MOD11A1.061", "limit": 5})
    assert search.status_code == 200 and search.json()["features"] == []
    item = geofed.get("/stac/collections/appeears:MOD11A1.061/items/anything")
    assert item.status_code == 404


def test_metadata_only_collections_advertise_no_item_properties(geofed: Any) -> None:
    # No items, so no AppEEARS queryable: only the item members every STAC collection has (the bridge's own),
    # and filtering on them is a valid, empty search.
    queryables = geofed.get("/stac/collections/appeears:MOD11A1.061/queryables").json()["properties"]
    assert set(queryables) <= {"id", "collection", "geometry", "datetime"}
    search = geofed.get("/stac/search", params={"collections": "appeears:MOD11A1.061",
                                                "filter": "collection='appeears:MOD11A1.061'"})
    assert search.status_code == 200 and search.json()["features"] == []


# ----------------------------------------------------------------- catalog revalidation
def test_catalog_reads_revalidate_and_refused_credentials_are_a_502(start_geofed: Any, sims: Any) -> None:
    # one server for two checks (servers are slow to start): no read cache, and a wrong AppEEARS password
    wrong = "not-the-password-4711"
    server = start_geofed(GEOFED_CACHE_TTL="0", GEOFED_APPEEARS_PASSWORD=wrong)
    body = {"inputs": {"task_type": "point", "start_date": "2020-01-01", "end_date": "2020-01-02",
                       "layers": [{"product": "MOD13Q1.061", "layer": "NDVI_500m"}],
                       "points": [{"latitude": 10, "longitude": 10}]}}
    for _ in range(2):
        response = server.post("/processes/appeears-extract/execution", json=body,
                               headers={"Prefer": "respond-async"})
        assert response.status_code == 400 and "MOD13Q1.061/NDVI_500m" in response.text
    product_reads = [e["status"] for e in sims.log("appeears", "/product/MOD13Q1.061")]
    list_reads = [e["status"] for e in sims.log("appeears", "/product") if e["path"] == "/product"]
    assert product_reads == [200, 304]
    assert list_reads == [200, 304]
    # the catalog is public; submitting needs a login, which AppEEARS refuses
    body["inputs"]["layers"] = [{"product": "MOD13Q1.061", "layer": "_250m_16_days_NDVI"}]
    response = server.post("/processes/appeears-extract/execution", json=body, headers={"Prefer": "respond-async"})
    assert response.status_code == 502, response.text
    assert "AppEEARS" in response.json()["description"] and wrong not in response.text
    assert [e["status"] for e in sims.log("appeears", "/login")] == [401]
    assert sims.log("appeears", "/task") == []
    assert wrong not in server.log_text()


# ----------------------------------------------------------------- the simulator's contract
def test_simulator_login_expiry_and_query_string_submit(sims: Any) -> None:
    creds = DEMO_CREDENTIALS["appeears"]
    assert sims.post("appeears", "/login", auth=(creds["username"], "wrong")).status_code == 401
    token = sims.post("appeears", "/login", auth=(creds["username"], creds["password"])).json()
    assert token["token_type"] == "Bearer" and token["expiration"].endswith("Z")
    headers = {"Authorization": f"Bearer {token['token']}"}
    submitted = sims.post("appeears", "/task?task_type=point&task_name=qs&startDate=01-01-2010&endDate=01-31-2010"
                          "&layer=MOD11A1.061,LST_Day_1km&coordinate=US-Ha1,DBF,42.5378,-72.1715",
                          headers=headers)
    # the doc's sample answer: the id only in Location, an empty text/html body
    assert submitted.status_code == 202 and submitted.content == b""
    assert submitted.headers["content-type"].startswith("text/html") and submitted.headers["content-length"] == "0"
    task_id = submitted.headers["location"].removeprefix("/status/")
    assert [t["task_id"] for t in sims.get("appeears", "/task", headers=headers).json()
            if t["task_name"] == "qs"] == [task_id]
    task = sims.get("appeears", f"/task/{task_id}", headers=headers).json()
    assert task["params"]["coordinates"] == [{"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1",
                                              "category": "DBF"}]  # lat,lon order in the query string
    refused = sims.post("appeears", "/task", json={"task_type": "point", "params": {}}, headers=headers)
    assert refused.status_code == 400 and refused.json() == {"message": "'task_name' is a required property"}
    sims.expire_tokens("appeears")
    assert sims.get("appeears", f"/status/{task_id}", headers=headers).status_code == 403


def test_simulator_pages_products_and_answers_304(sims: Any) -> None:
    everything = sims.get("appeears", "/product").json()
    pages = [sims.get("appeears", "/product", params={"limit": 10, "offset": o}).json() for o in (0, 10, 20, 30)]
    assert [p["ProductAndVersion"] for page in pages for p in page] == [p["ProductAndVersion"] for p in everything]
    assert len(pages[-1]) < 10
    first = sims.get("appeears", "/product/SRTMGL1_NC.003")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = httpx.get(f"{sims.url('appeears')}/product/SRTMGL1_NC.003", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
