"""Runs the simulators on a loopback port: in a background thread (`SimulatorServer`, tests), in a child
process (`SimulatorProcess`, demo mode) or in the foreground (`geofed simulate`)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import uvicorn

from simulators import available, build_root_app

# Seconds an idle client connection is kept open, as uvicorn's, Node's and Apache's default: the simulators close
# idle connections as real upstreams do, so a client that reuses one for too long meets the race in the tests.
KEEP_ALIVE_SECONDS = 5


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def base_urls(host: str, port: int, names: list[str]) -> dict[str, str]:
    """Upstream name → its simulator's service root, on the one port all simulators share."""
    return {name: f"http://{host}:{port}/{name}" for name in names}


class SimulatorServer:
    """All simulators on one loopback port; `base_urls` maps upstream name → service root."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", names: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.names = available() if names is None else names
        self.app = build_root_app(self.names)
        config = uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", lifespan="off",
                                timeout_keep_alive=KEEP_ALIVE_SECONDS)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_urls(self) -> dict[str, str]:
        return base_urls(self.host, self.port, self.names)

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


class SimulatorProcess:
    """All simulators on one loopback port in a child process: the demo server's upstreams then use the other
    core (a GIL of their own) and their memory is not counted as the server's — as with real upstreams. The child
    exits when its parent does, however the parent ends."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", names: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.names = available() if names is None else names
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_urls(self) -> dict[str, str]:
        return base_urls(self.host, self.port, self.names)

    def start(self, timeout: float = 30.0) -> SimulatorProcess:
        command = [sys.executable, "-m", "simulators.server", "--host", self.host, "--port", str(self.port),
                   "--names", ",".join(self.names), "--parent", str(os.getpid())]
        self._process = subprocess.Popen(command)
        deadline = time.monotonic() + timeout
        while not accepts(self.host, self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"simulators did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP server listens at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _exit_with_parent(parent: int) -> None:
    """Ends this process within a second of `parent` being gone. (Not PR_SET_PDEATHSIG: it fires when the parent
    *thread* that started us ends, and demo mode may start the simulators from any thread.)"""

    def watch() -> None:
        while _alive(parent):
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="geofed-simulators-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    # not `os.getppid() == parent`: a tracer (py-spy, gdb) attached to this process may change what it returns
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has ended
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="geofed's upstream simulators on one loopback port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--names", default="", help="comma-separated simulators (default: all)")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent:
        _exit_with_parent(args.parent)
    names = [n for n in args.names.split(",") if n] or None
    SimulatorServer(port=args.port, host=args.host, names=names).run_forever()


if __name__ == "__main__":
    main()
