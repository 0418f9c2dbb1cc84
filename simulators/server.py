"""Runs the simulators on a loopback port, in a background thread or in the foreground."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from simulators import available, build_root_app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SimulatorServer:
    """All simulators on one loopback port; `base_urls` maps upstream name → service root."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", names: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.names = available() if names is None else names
        self.app = build_root_app(self.names)
        config = uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{self.port}/{name}" for name in self.names}

    def start(self, timeout: float = 15.0) -> SimulatorServer:
        self._thread = threading.Thread(target=self.server.run, name="geofed-simulators", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"simulators did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_forever(self) -> None:
        self.server.run()
