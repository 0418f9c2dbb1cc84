"""The commands a newcomer runs: `geofed config`, `geofed simulate`, and the Makefile's Python finder."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def run_geofed(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GEOFED_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "geofed.cli", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


def test_config_prints_effective_settings_with_secrets_masked() -> None:
    secret = "sh-secret-should-not-print-1234"
    result = run_geofed("config", env={"GEOFED_SENTINELHUB_CLIENT_SECRET": secret,
                                       "GEOFED_SENTINELHUB_URL": "https://services.sentinel-hub.com",
                                       "GEOFED_PORT": "5123"})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert '"sentinelhub_client_secret": "********"' in result.stdout
    assert '"port": 5123' in result.stdout
    assert '"sentinelhub_mode": "real"' in result.stdout


def test_simulate_prints_working_base_urls() -> None:
    process = subprocess.Popen([sys.executable, "-m", "geofed.cli", "simulate", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        urls = {}
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("# admin"):
                break
            if line.startswith("export "):  # a shell can eval these lines as they are
                key, value = shlex.split(line)[1].split("=", 1)
                if key.endswith("_URL") and not key.endswith(("TOKEN_URL", "AUTH_URL")):
                    urls[key] = value
        assert len(urls) == 5
        for url in urls.values():
            deadline = 50
            while deadline:
                try:
                    assert httpx.get(f"{url}/_sim/info", timeout=2).status_code == 200
                    break
                except httpx.HTTPError:
                    deadline -= 1
                    import time

                    time.sleep(0.2)
            assert deadline, url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_python_finder_fails_clearly_without_python_312(tmp_path: Path) -> None:
    # a PATH whose only python is 3.11 and no pyenv: the finder must refuse with a clear message
    old = Path(tmp_path / "bin")
    old.mkdir()
    (old / "python3").write_text("#!/bin/sh\necho 'Python 3.11.7'\nexit 1\n")
    (old / "python3").chmod(0o755)
    result = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "find-python")], env={"PATH": f"{old}:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Python >= 3.12" in result.stderr


def test_python_finder_finds_a_312_interpreter() -> None:
    result = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "find-python")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    version = subprocess.run([result.stdout.strip(), "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
                             capture_output=True, text=True)
    assert version.stdout.strip() == "True"
