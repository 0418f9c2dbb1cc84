"""`deploy/compose.yaml` and `deploy/nginx.conf`, checked without a container engine (issue 18).

The compose file must run what `tests/test_scale_out.py` runs on loopback: the same services, nginx's upstreams
at the replicas' ports, and every replica given the settings a replica needs (`REPLICA_SETTINGS`, the live test's
environment is built from the same list). The live test runs nginx on `deploy/nginx.conf` itself, rewritten
only for loopback and an unprivileged prefix (`local_nginx_conf`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
REPLICAS = ("geofed-1", "geofed-2")
# What each replica needs to act as one server with the others (README, "Scale out").
REPLICA_SETTINGS = ("GEOFED_HOST", "GEOFED_PORT", "GEOFED_PUBLIC_URL", "GEOFED_DATABASE_URL", "GEOFED_REDIS_URL",
                    "GEOFED_PAGINATION_SECRET", "GEOFED_TOKEN_KEY")
SECRETS = ("GEOFED_DATABASE_URL", "GEOFED_PAGINATION_SECRET", "GEOFED_TOKEN_KEY")  # env files only, never inline


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file(name: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file's committed example (`geofed.env` → `geofed.env.example`)."""
    out: dict[str, str] = {}
    for line in (DEPLOY / f"{name}.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{name}.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in service.get("env_file", []):
        env.update(env_file(name if isinstance(name, str) else name["path"]))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def nginx_conf() -> str:
    return (DEPLOY / "nginx.conf").read_text()


def nginx_upstreams(text: str) -> list[tuple[str, int]]:
    block = re.search(r"upstream\s+geofed\s*\{(.*?)\}", text, re.S)
    assert block, "nginx.conf has no `upstream geofed` block"
    return [(host, int(port)) for host, port in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", block.group(1), re.M)]


def nginx_listen(text: str) -> int:
    ports = re.findall(r"^\s*listen\s+(\d+)\s*;", text, re.M)
    assert len(ports) == 1, ports
    return int(ports[0])


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.skip("REQUIRES-TOOL: nginx (Debian package `nginx`; .ci/run installs it)")
    return found


def local_nginx_conf(prefix: Path, listen: int, replica_ports: list[int]) -> Path:
    """`deploy/nginx.conf` for loopback: the replicas' service names → 127.0.0.1 ports, nginx on `listen`, in the
    foreground with one worker, files under `prefix` (no root needed), and a header naming the replica that
    answered (`X-Geofed-Replica`, for the tests)."""
    text = nginx_conf()
    servers = nginx_upstreams(text)
    assert len(servers) == len(replica_ports)
    for (host, port), local in zip(servers, replica_ports, strict=True):
        text = re.sub(rf"server\s+{re.escape(host)}:{port}\b", f"server 127.0.0.1:{local}", text)
    text = re.sub(r"^(\s*)listen\s+\d+\s*;", rf"\1listen 127.0.0.1:{listen};", text, flags=re.M)
    user = f"user {os.getenv('USER') or 'root'};\n" if os.geteuid() == 0 else ""
    text = re.sub(r"^worker_processes\s+\S+;", f"{user}worker_processes 1;\ndaemon off;", text, flags=re.M)
    text = re.sub(r"^pid\s+\S+;", f"pid {prefix}/nginx.pid;", text, flags=re.M)
    text = re.sub(r"^error_log\s+\S+", f"error_log {prefix}/error.log", text, flags=re.M)
    temp = "".join(f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                             "scgi"))
    text = re.sub(r"^(\s*)access_log\s+\S+;", rf"\1access_log {prefix}/access.log;\n{temp}", text, count=1,
                  flags=re.M)
    text = re.sub(r"(location\s+/\s*\{)", r"\1\n            add_header X-Geofed-Replica $upstream_addr always;", text,
                  count=1)
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ compose
def test_compose_runs_two_replicas_nginx_postgresql_and_redis_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {*REPLICAS, "nginx", "postgres", "redis"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    first, second = (services[r] for r in REPLICAS)
    assert {k: v for k, v in first.items() if k != "volumes"} == {k: v for k, v in second.items() if k != "volumes"}
    assert first["volumes"] != second["volumes"], "each replica keeps its own data directory"
    for replica in REPLICAS:
        assert services[replica]["build"]["context"] == ".."
        assert services[replica]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                   "redis": {"condition": "service_healthy"}}
        assert "/healthz" in " ".join(services[replica]["healthcheck"]["test"])
    assert services["nginx"]["depends_on"] == {r: {"condition": "service_healthy"} for r in REPLICAS}
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_nginx_balances_over_the_replicas_at_their_ports() -> None:
    services = compose()["services"]
    text = nginx_conf()
    assert nginx_upstreams(text) == [(r, int(service_env(services[r])["GEOFED_PORT"])) for r in REPLICAS]
    published = [p.split(":") for p in services["nginx"]["ports"]]
    assert [int(container) for _, container in published] == [nginx_listen(text)]
    directives = re.sub(r"#.*", "", text)
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", directives), "no sticky sessions: any replica answers"


def test_every_replica_gets_what_a_replica_needs_secrets_from_env_files() -> None:
    services = compose()["services"]
    published_host_port = int(services["nginx"]["ports"][0].split(":")[0])
    for replica in REPLICAS:
        env = service_env(services[replica])
        assert set(REPLICA_SETTINGS) <= set(env), set(REPLICA_SETTINGS) - set(env)
        inline = services[replica].get("environment") or {}
        assert not set(SECRETS) & set(inline), "secrets come from env files, not compose.yaml"
        assert env["GEOFED_PUBLIC_URL"] == f"http://localhost:{published_host_port}", "links must name nginx"
        assert env["GEOFED_HOST"] == "0.0.0.0"
        assert urlsplit(env["GEOFED_REDIS_URL"]).hostname == "redis"
        database = urlsplit(env["GEOFED_DATABASE_URL"])
        postgres = service_env(services["postgres"])
        assert (database.hostname, database.username, database.password, database.path) == (
            "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], f"/{postgres['POSTGRES_DB']}")
        assert env["GEOFED_DEMO"] == "0", "a deployment talks to the real upstreams"


def test_env_file_examples_hold_placeholders_not_secrets() -> None:
    env = env_file("geofed.env")
    assert env["GEOFED_PAGINATION_SECRET"].startswith("change-me")
    assert env["GEOFED_TOKEN_KEY"].startswith("change-me")
    assert env["GEOFED_PAGINATION_SECRET"] != env["GEOFED_TOKEN_KEY"]
    assert env_file("postgres.env")["POSTGRES_PASSWORD"] == "change-me"
    ignored = (ROOT / ".gitignore").read_text() if (ROOT / ".gitignore").exists() else ""
    assert "deploy/*.env" in ignored.splitlines(), "filled-in env files must stay out of git"


def test_the_loopback_nginx_conf_is_valid(tmp_path: Path) -> None:
    conf = local_nginx_conf(tmp_path, 18080, [15001, 15002])
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / kind).mkdir()
    checked = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
