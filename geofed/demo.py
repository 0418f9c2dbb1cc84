"""The demo launcher: the one place where product code imports `simulators`.

In demo mode every registered upstream without a configured URL is served by its simulator on loopback (all in
one child process of the server, `simulators.server.SimulatorProcess`), and
`geofed.upstreams` is told where it listens and which demo credentials it accepts.
"""

from __future__ import annotations

import logging
from typing import Any

from geofed import registry, upstreams
from geofed.settings import Settings

LOGGER = logging.getLogger("geofed")


def start_simulators(settings: Settings) -> Any:
    """Starts the simulators of the unconfigured upstreams (demo mode); returns the server, or None."""
    if not settings.demo:
        return None
    from simulators import specs
    from simulators.server import SimulatorProcess

    known = specs()
    wanted = [n for n in registry.names() if n in known and not settings.upstream_url(n)]
    if not wanted:
        return None
    server = SimulatorProcess(port=settings.simulator_port, names=wanted).start()
    for name, url in server.base_urls.items():
        spec = known[name]
        upstreams.set_simulated(name, upstreams.Simulated(url, dict(spec.credentials), dict(spec.aux_paths)))
    LOGGER.info("demo mode: simulators for %s on %s", ", ".join(wanted), f"127.0.0.1:{server.port}")
    return server


def run_standalone(port: int, echo: Any) -> None:
    """`geofed simulate`: every simulator on one loopback port, printing the environment that points a geofed
    server at them as `export` lines a shell can source."""
    import shlex

    from simulators import geofed_env
    from simulators.server import SimulatorServer

    server = SimulatorServer(port=port)
    echo("# eval these in a shell (or source them) to point a geofed server at the simulators:")
    for key, value in geofed_env(server.base_urls).items():
        echo(f"export {key}={shlex.quote(value)}")
    echo("# admin routes per simulator: <url>/_sim/faults, <url>/_sim/log, <url>/_sim/tokens/expire")
    server.run_forever()
