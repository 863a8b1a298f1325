"""A throwaway Ray cluster on this machine: a head and labelled worker nodes, each a `ray start`.

Every node gets its own ports (free ones) and the cluster one short temp folder (Unix socket
paths must stay under 108 characters), so it never meets another cluster on the machine. Each
`ray start` runs in its own process group, which teardown kills: `ray stop` would stop every
Ray on the machine, other people's too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# Explicit: with the mode unset, a ~/.ray/auth_token left by anyone turns token auth on for
# some processes of the cluster and not others.
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_raylet_start_wait_time_s": "120",  # a loaded 2-core machine can need more than 30 s
}
_PER_NODE_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Starts nodes with `head()` / `add()`; `close()` kills them all (idempotent)."""

    def __init__(self, cpus: int = 1) -> None:
        self.cpus = cpus
        self.folder = Path(tempfile.mkdtemp(prefix="osr", dir="/tmp"))
        self.address = ""
        self.groups: dict[str, int] = {}  # node name → process group of its `ray start`
        self.env = {**os.environ, **ENV}
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        ports = [str(a) for flag in _PER_NODE_PORTS for a in (flag, free_port())]
        log = (self.folder / f"{name}.log").open("w")
        command = [RAY, "start", *args, *ports, "--num-cpus", str(self.cpus)]
        command += ["--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.groups[name] = process.pid
        return process

    def _wait(self, name: str, process: subprocess.Popen) -> None:
        if process.wait(timeout=180) != 0:
            text = (self.folder / f"{name}.log").read_text()[-2000:]
            raise RuntimeError(f"ray start of {name} failed:\n{text}")

    def head(self, labels: str = "hw=host") -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        args = ["--head", "--port", str(port)]
        args += ["--include-dashboard", "false", "--ray-client-server-port", str(free_port())]
        args += ["--temp-dir", str(self.folder), "--labels", labels]
        args += ["--resources", json.dumps({"timing": 1})]
        self._wait("head", self._start("head", args))

    def add(self, *nodes: tuple[str, str]) -> None:
        """Starts (name, labels) worker nodes, each with one `timing` resource.

        One at a time, each tried twice: `ray start` gives a joining node a fixed 30 s to
        register, which a loaded 2-core machine can miss.
        """
        for name, labels in nodes:
            args = ["--address", self.address, "--labels", labels]
            args += ["--resources", json.dumps({"timing": 1})]
            for attempt in (1, 2):
                try:
                    self._wait(name, self._start(name, args))
                    break
                except RuntimeError:
                    self.kill(name, signal.SIGKILL)
                    if attempt == 2:
                        raise

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Ends one node's processes (its `ray start` group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.groups[name], sig)

    def close(self) -> None:
        for name in reversed(list(self.groups)):
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + 3  # gcs_server can ignore SIGTERM: then SIGKILL
        while time.monotonic() < deadline and any(_alive(g) for g in self.groups.values()):
            time.sleep(0.2)
        for name in self.groups:
            self.kill(name, signal.SIGKILL)
        self.groups.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def local_cluster(*workers: tuple[str, str], cpus: int = 1) -> Iterator[LocalCluster]:
    """A head (hw=host) and `workers` ((name, "key=value"), ...), killed on the way out."""
    cluster = LocalCluster(cpus)
    try:
        cluster.head()
        cluster.add(*workers)
        yield cluster
    finally:
        cluster.close()
