"""`geofed serve | simulate | config`."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

import click
from pydantic import SecretStr, ValidationError

from geofed.settings import Settings, get_settings

EXIT_BAD_SETTING = 2  # like a usage error: the command line (here, its environment) is wrong


@click.group()
def main() -> None:
    """geofed: federated OGC API / STAC API server for GHG emissions and EO data."""


@main.command()
@click.option("--host", default=None, help="bind address (default GEOFED_HOST, 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default GEOFED_PORT, 5000)")
def serve(host: str | None, port: int | None) -> None:
    """Run the server (demo simulators start for every upstream without a configured URL)."""
    import uvicorn

    if host:
        os.environ["GEOFED_HOST"] = host
    if port:
        os.environ["GEOFED_PORT"] = str(port)
    if (host or port) and "GEOFED_PUBLIC_URL" not in os.environ:
        os.environ["GEOFED_PUBLIC_URL"] = f"http://{host or '127.0.0.1'}:{port or 5000}"
    get_settings.cache_clear()
    settings = load_settings()
    _limit_malloc_arenas(settings.malloc_arenas)
    from geofed.app import create_app

    app = create_app(settings)
    click.echo(f"geofed on http://{settings.host}:{settings.port}  (OGC API: /   STAC API: /stac/)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                proxy_headers=True, timeout_graceful_shutdown=5, timeout_keep_alive=settings.keepalive)


def load_settings() -> Settings:
    """The settings, or one line per invalid setting on stderr and exit status 2 (no traceback)."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            click.echo(f"geofed: {describe_error(error)}", err=True)
        sys.exit(EXIT_BAD_SETTING)


def describe_error(error: Any) -> str:
    """`invalid setting GEOFED_PORT: Input should be a valid integer, … (got 'abc')`; a secret's value is not
    repeated."""
    field = str(error["loc"][0]) if error.get("loc") else ""
    name = f"GEOFED_{field.upper()}" if field else "GEOFED_*"
    info = Settings.model_fields.get(field)
    secret = info is not None and "SecretStr" in repr(info.annotation)
    got = "" if secret or "input" not in error or isinstance(error["input"], dict | SecretStr) else (
        f" (got {error['input']!r})")
    return f"invalid setting {name}: {error['msg']}{got}"


def _limit_malloc_arenas(arenas: int) -> None:
    """Caps glibc's malloc arenas before the worker threads start.

    glibc gives each thread that allocates its own arena (up to 8 × cores) and rarely returns their memory, so
    64 worker threads that each build a large page keep every page's high-water mark: measured on Epoch's
    1000-plot pages, peak RSS passed 240 MB with the default and levelled near 170 MB with few arenas. The
    `MALLOC_ARENA_MAX` environment variable does the same but must be set before the process starts.
    """
    if arenas <= 0 or sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    m_arena_max = -8  # from glibc's malloc.h
    libc.mallopt(m_arena_max, arenas)


@main.command()
@click.option("--port", default=None, type=int,
              help="loopback port for all simulators (default GEOFED_SIMULATOR_PORT; 0 = any free)")
def simulate(port: int | None) -> None:
    """Run every upstream simulator standalone on loopback and print `export` lines pointing geofed at them."""
    from geofed.demo import run_standalone

    settings = load_settings()
    run_standalone(settings.simulator_port if port is None else port, click.echo)


@main.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    from geofed import registry

    settings = load_settings()
    effective = settings.masked()
    for name in registry.names():
        effective[f"{name}_mode"] = settings.upstream_mode(name)
    click.echo(json.dumps(effective, indent=2, default=str))


if __name__ == "__main__":
    main()
