"""The README's "First hour", run as a new user would (issue 19 §6).

The recipes are read from README.md itself — every `sh` and `python` block of the "First hour" section, and the
pystac-client one-liner — and run as written in a shell with the project's virtualenv active, against a server
started here the way the section starts it (demo upstreams, `GEOFED_API_KEYS=change-me`); only the address
`http://127.0.0.1:5000` is replaced by the test server's. The settings table must name every field of
`geofed.settings.Settings`, and a bad setting must be one line, not a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from geofed import registry
from geofed.settings import Settings
from simulators import specs
from tests.conftest import ROOT, GeofedServer, launch_geofed
from tests.test_process_examples import quick_appeears_tasks  # noqa: F401 - a fixture this module uses

README = ROOT / "README.md"
DEMO_URL = "http://127.0.0.1:5000"
VENV_BIN = Path(sys.executable).parent  # the interpreter running the tests is the project's venv (make test)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
NAME = re.compile(r"\bGEOFED_[A-Z0-9_]*[A-Z0-9]")

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines", "quick_appeears_tasks")


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def recipes() -> list[tuple[str, str]]:
    """(language, code) of the runnable blocks of "First hour" (`text` blocks are instructions, not run)."""
    return [(lang, code) for lang, code in FENCE.findall(section("First hour")) if lang in ("sh", "python")]


def user_env() -> dict[str, str]:
    """A user's shell after `source .venv/bin/activate` (or `make shell`), without the tests' GEOFED_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOFED_", "PYGEOAPI_"))}
    env.update(VIRTUAL_ENV=str(VENV_BIN.parent), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def run_shell(code: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`bash` running `code` (strict: the first failing command fails the recipe). Its own session, so that
    whatever a recipe leaves in the background is stopped with it."""
    process = subprocess.Popen(["bash", "-c", "set -eo pipefail\n" + code], cwd=cwd, env=user_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def server(geofed_env_vars: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeofedServer]:
    """The server as "First hour" starts it: every upstream on the simulators, API key `change-me`."""
    started = launch_geofed({**geofed_env_vars, "GEOFED_API_KEYS": "change-me"},
                            tmp_path_factory.mktemp("geofed-first-hour"))
    yield started
    started.stop()


# ------------------------------------------------------------------ the settings table
def documented_settings() -> set[str]:
    """Every GEOFED_ name in the first column of README's settings tables (header `variable` or `setting`)."""
    names: set[str] = set()
    header = ""
    for line in README.read_text().splitlines():
        if not line.startswith("|"):
            header = ""
            continue
        first = line.split("|")[1].strip()
        if not header:
            header = first
        elif header in ("variable", "setting"):
            names.update(NAME.findall(first))
    return names


def declared_settings() -> set[str]:
    """Names every pydantic settings class of geofed and its upstreams reads (`env_prefix` + field)."""
    registry.upstreams()  # imports every provider, so that their settings classes exist
    names: set[str] = set()
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        prefix = str(cls.model_config.get("env_prefix") or "")
        if prefix.startswith("GEOFED_"):
            names.update(f"{prefix}{field}".upper() for field in cls.model_fields)
    return names


def test_readme_settings_table_names_every_setting() -> None:
    documented = documented_settings()
    missing = sorted(f"GEOFED_{f.upper()}" for f in Settings.model_fields if f"GEOFED_{f.upper()}" not in documented)
    assert not missing, f"README settings table lacks rows for: {', '.join(missing)}"
    sources = "\n".join(p.read_text() for folder in ("geofed", "providers", "stac_bridge")
                        for p in (ROOT / folder).rglob("*.py"))
    unknown = sorted(n for n in documented - declared_settings() if n not in sources)
    assert not unknown, f"README documents settings geofed does not read: {', '.join(unknown)}"


# ------------------------------------------------------------------ a bad setting
@pytest.mark.parametrize("command", ["serve", "config", "simulate"])
def test_bad_setting_is_one_clear_line(command: str, tmp_path: Path) -> None:
    result = run_shell(f"GEOFED_PORT=abc geofed {command}", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert result.stderr.splitlines() == [
        "geofed: invalid setting GEOFED_PORT: Input should be a valid integer, unable to parse string as an integer "
        "(got 'abc')"], result.stderr
    assert result.stdout == ""


# ------------------------------------------------------------------ make shell, a quiet start
def test_make_shell_puts_the_venv_on_path(tmp_path: Path) -> None:
    # `-o` keeps make from reinstalling the venv (make test has just done it)
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", "shell"], cwd=ROOT, text=True, timeout=60,
                            input="command -v geofed; python -c 'import sys; print(sys.prefix)'\n",
                            capture_output=True, env={**os.environ, "SHELL": "/bin/bash"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(ROOT / ".venv" / "bin" / "geofed"), str(ROOT / ".venv")], result.stdout
    assert "source .venv/bin/activate" in result.stderr  # says how to do it without make


def test_startup_has_no_stac_fastapi_default_title_warning(server: GeofedServer) -> None:
    assert server.get("/stac/").json()["title"] == "geofed STAC API"
    assert "Using default values for stac_fastapi" not in server.log_text()


# ------------------------------------------------------------------ the recipes
def test_pystac_client_one_liner_runs_with_the_venv_python(server: GeofedServer) -> None:
    text = README.read_text()
    one_liner = re.search(r"^\.venv/bin/python -c \"from pystac_client.*?\"$", text, re.M | re.S)
    assert one_liner, "README lost its pystac-client one-liner"
    result = run_shell(one_liner.group(0).replace(DEMO_URL, server.url), cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ids = json.loads(result.stdout.strip().replace("'", '"'))
    assert len(ids) == 5 and len(set(ids)) == 5, ids


def test_first_hour_has_recipes_for_processes_jobs_owslib_pystac_and_simulate() -> None:
    code = "\n".join(c for _, c in recipes())
    for needle in ("/execution", "Prefer: respond-async", "/jobs/$JOB", "/results", "-X DELETE", "X-API-Key",
                   "owslib", "pystac_client", "geofed simulate", "geofed config"):
        assert needle in code, f"First hour lost its recipe using {needle!r}"


@pytest.mark.parametrize("index", range(len(recipes())))
def test_first_hour_recipe_runs_as_written(index: int, server: GeofedServer, tmp_path: Path) -> None:
    lang, code = recipes()[index]
    code = code.replace(DEMO_URL, server.url)
    result = run_shell(code if lang == "sh" else f"python - <<'PYTHON'\n{code}PYTHON\n", cwd=tmp_path)
    assert result.returncode == 0, (code, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    out = result.stdout
    if "for id in" in code:  # every process with its own example: 200 (result) or 201 (job)
        answers = dict(line.split(": ") for line in out.splitlines())
        listed = [p["id"] for p in server.get("/processes", params={"limit": 1000}).json()["processes"]]
        assert sorted(answers) == sorted(listed), out
        assert all(code in ("200", "201") for code in answers.values()), answers
    elif "-X DELETE" in code:  # the job lifecycle
        lines = out.splitlines()
        assert "successful" in lines, out[-2000:]
        assert json.loads(lines[-1])["status"] == "dismissed", lines[-1]
    elif "geofed simulate" in code:  # export lines sourced, then geofed config sees real upstreams
        for name in specs():
            assert f'"{name}_mode": "real"' in out, out
    elif "epoch-aggregate-emissions/execution" in code:
        feature = json.loads(out)
        assert feature["type"] == "Feature" and feature["properties"]["aggregate_plot_count"] > 0, out[:500]
    else:
        assert out.strip(), f"recipe printed nothing:\n{code}"
