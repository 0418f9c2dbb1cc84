"""schemathesis over both faces' OpenAPI documents (issue 13 §4): no 5xx, no undocumented status code.

Every operation of `/stac/api` (GET and POST search included) and of the OGC `/openapi?f=json` is driven with a
few schema-valid and schema-invalid requests against the session `geofed` server (the defaults of `make serve`,
simulators behind it). Checks: `not_a_server_error` and `status_code_conformance`; any failure fails the test,
with the failing request of each operation in the message. Left out: DELETE and `/processes/*/execution` (its
`subscriber` callback URLs must never be fuzzed). pygeoapi's document refers to `https://schemas.opengis.net/…`
(and one Records file on raw.githubusercontent.com): those refs are rewritten to a loopback HTTP server over the
offline mirror `tests/schemas/ogc/` (see tests/schemas/SOURCES.md), so nothing is fetched online.
Hypothesis runs derandomized (the same cases on every run) with a bounded number of examples per operation.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, status_code_conformance

from tests.conftest import SCHEMAS

CHECKS = [not_a_server_error, status_code_conformance]
MIRRORED_HOSTS = ("https://schemas.opengis.net/", "https://raw.githubusercontent.com/")
SKIP = re.compile(r"/processes/[^/]+/execution$")
# examples per operation and generation mode: the whole module stays well under ~90 s on 2 cores
STAC_EXAMPLES = 15
OGC_EXAMPLES = 4


@contextmanager
def schema_mirror() -> Iterator[str]:
    """`tests/schemas/ogc/` on a loopback HTTP server, laid out by URL (host/path); yields its base URL."""
    folder = SCHEMAS / "ogc"
    if not folder.is_dir():
        raise FileNotFoundError(f"the offline OGC schema mirror is missing at {folder}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ogc_mirror() -> Iterator[str]:
    with schema_mirror() as url:
        yield url


def fuzz_both_faces(url: str, mirror: str, stac_examples: int = 15, ogc_examples: int = 4
                    ) -> tuple[list[str], int, int]:
    """Fuzzes the STAC and the OGC face of the server at `url`: (failures, STAC cases, OGC cases). Also used by
    `benchmarks/bench_fuzz.py`, which measures the server's memory over longer runs."""
    stac = schemathesis.openapi.from_url(f"{url}/stac/api", timeout=60)
    stac_failures, stac_cases = fuzz(stac, f"{url}/stac", stac_examples)
    document = httpx.get(f"{url}/openapi", params={"f": "json"}, timeout=60).json()
    ogc = schemathesis.openapi.from_dict(localized(document, mirror))
    ogc_failures, ogc_cases = fuzz(ogc, url, ogc_examples)
    return stac_failures + ogc_failures, stac_cases, ogc_cases


def localized(document: Any, mirror: str) -> Any:
    """The document with every mirrored schema URL pointing at the loopback mirror."""
    if isinstance(document, dict):
        return {k: localized(v, mirror) for k, v in document.items()}
    if isinstance(document, list):
        return [localized(v, mirror) for v in document]
    if isinstance(document, str):
        for host in MIRRORED_HOSTS:
            if document.startswith(host):
                return mirror + document.removeprefix("https://")
    return document


def fuzz(schema: Any, base_url: str, examples: int) -> tuple[list[str], int]:
    """Runs every selected operation; returns one failure line per failing operation and mode, and the case
    count."""
    failures: list[str] = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE" or SKIP.search(operation.path):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure, cases = _run(operation, mode, base_url, examples)
            count += cases
            if failure:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {failure}")
    return failures, count


def _run(operation: Any, mode: GenerationMode, base_url: str, examples: int) -> tuple[str | None, int]:
    """`examples` cases of one operation; the first failure (not shrunk: each case is a real request)."""
    seen: list[str] = []
    count = 0

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal count
        count += 1
        try:
            case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup, or a transport error
            seen.append(str(exc).strip()[:1200])

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to make invalid (no parameters, or only free-form strings)
    except Exception as exc:  # noqa: BLE001 - a strategy that cannot generate is reported as a failure
        seen.append(f"could not run: {exc!r}"[:600])
    return (seen[0] if seen else None), count


@pytest.mark.timeout(300)
def test_both_faces_answer_only_documented_statuses_and_no_server_error(geofed: Any, ogc_mirror: str) -> None:
    started = time.monotonic()
    failures, stac_cases, ogc_cases = fuzz_both_faces(geofed.url, ogc_mirror, STAC_EXAMPLES, OGC_EXAMPLES)
    print(f"schemathesis: {stac_cases} STAC and {ogc_cases} OGC cases in {time.monotonic() - started:.0f} s")
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    assert stac_cases > 20 and ogc_cases > 50


def test_filter_with_a_non_string_property_is_a_400(geofed: Any) -> None:
    """Found by the fuzzing: `{"property": {}}` in a CQL2 JSON filter was a 500 on the OGC face."""
    body = {"op": "t_after", "args": [{"property": {}}, {"property": ""}]}
    response = geofed.post("/collections/carbonmapper-plumes/items", json=body)
    assert response.status_code == 400, response.text
    assert "filter" in response.json()["description"]
    stac = geofed.post("/stac/search", json={"collections": ["carbonmapper-plumes"], "filter": body,
                                            "filter-lang": "cql2-json"})
    assert stac.status_code == 400, stac.text


def test_a_geometry_collection_with_malformed_geometries_is_not_a_500(geofed: Any) -> None:
    """Found by `python -m benchmarks fuzz` (more examples than the test above): the vertex count of the body's
    geometries failed on `"geometries": 5`."""
    stray = geofed.post("/stac/search", json={"&": {"type": "GeometryCollection", "geometries": 5}, "limit": 1})
    assert stray.status_code == 200, stray.text  # an unknown member is ignored, as STAC allows
    bad = geofed.post("/stac/search", json={"intersects": {"type": "GeometryCollection", "geometries": 5}})
    assert bad.status_code == 400 and "intersects" in bad.text, bad.text
    # and a "type" that is not a string (an object is not hashable: the geometry check failed on it)
    for kind in ({"a": 1}, ["Point"], None):
        odd = geofed.post("/stac/search", json={"&": {"type": kind, "coordinates": [1, 2]}, "limit": 1})
        assert odd.status_code == 200, (kind, odd.text)
        bad = geofed.post("/stac/search", json={"intersects": {"type": kind, "coordinates": [1, 2]}})
        assert bad.status_code == 400 and "intersects" in bad.text, (kind, bad.text)


@pytest.mark.parametrize("path", ["/stac/search", "/collections/carbonmapper-plumes/items",
                                  "/processes/sentinelhub-statistics/execution"])
def test_a_json_body_with_an_unpaired_surrogate_is_a_400(geofed: Any, path: str) -> None:
    """Found by `python -m benchmarks fuzz`: `{"collections": ["\\udb3a"]}` is valid JSON syntax, but the string
    it decodes to cannot be encoded again (a 500 when the STAC face hashed the query)."""
    body = b'{"collections": ["\\udb3a"], "filter": {"op": "=", "args": [{"property": "gas"}, "\\udb3a"]}}'
    response = geofed.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "body" and "surrogate" in response.json()["description"]


@pytest.mark.parametrize("path", ["/collections/carbonmapper-plumes/items/%0AINFO%3A", "/no-such-thing"])
def test_a_path_no_route_matches_is_a_json_404(geofed: Any, path: str) -> None:
    """Found by `python -m benchmarks fuzz`: an item id with a newline matched no route, and the router's
    plain-text "Not Found" was not the error document the OpenAPI promises."""
    for method in ("GET", "OPTIONS"):
        response = httpx.request(method, f"{geofed.url}{path}", timeout=30)
        assert response.status_code == 404, (method, response.text)
        assert response.headers["content-type"].startswith("application/json"), (method, response.text)
        assert response.json()["code"] == "NotFound"


@pytest.mark.parametrize("path", ["/stac/no-such-thing", "/stac/collections/carbonmapper-plumes/items/a/b"])
def test_a_stac_path_no_route_matches_is_a_stac_error(geofed: Any, path: str) -> None:
    """The STAC face's router answered `{"detail": "Not Found"}`, not the STAC error document (`code`,
    `description`) its OpenAPI promises."""
    response = httpx.get(f"{geofed.url}{path}", timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "NotFound" and response.json()["description"], response.text
    refused = httpx.request("PATCH", f"{geofed.url}/stac/search", timeout=30)
    assert refused.status_code == 405, refused.text
    assert refused.json()["code"] == "MethodNotAllowed", refused.text
