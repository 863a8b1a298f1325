"""Starts a Ray Serve folder on a fresh local Ray instance and keeps it up until stopped.

The folder's `app.py` is imported under the module name `app` (the name its config's
`import_path` uses) and Ray's workers find it through `JobConfig(code_search_path=[folder])`:
running `onnxsmith serve DIR` executes DIR/app.py, as `serve run` would — serve folders you
trust. A local instance (`address="local"`) never joins a cluster that `RAY_ADDRESS` or a
`ray start` on this machine points at.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from onnxsmith.errors import OnnxsmithError, UsageError
from onnxsmith.io import load_model
from onnxsmith.serve.ray_serve import APP_FILE, Application, read_applications, require_ray

OBJECT_STORE_BYTES = 128 * 2**20  # requests travel over HTTP, not the object store


def check_port(host: str, port: int) -> None:
    """Fails in one line when `host:port` cannot be bound (taken, or not this machine's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UsageError(
                f"serve: cannot listen on {host}:{port} ({e.strerror}) — pick another --port"
            ) from e


def _load_app(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("app", folder / APP_FILE)
    if spec is None or spec.loader is None:
        raise UsageError(f"serve: {folder / APP_FILE} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def _check_cpus(apps: list[Application]) -> int:
    need, have = sum(a.cpus for a in apps), os.cpu_count() or 1
    if need > have:
        raise UsageError(
            f"serve: the applications reserve {need} CPUs (replicas x threads), this machine has "
            f"{have} — re-export with fewer --instances or --threads"
        )
    return have


@contextmanager
def running(folder: Path, *, host: str, port: int, debug: bool = False) -> Iterator[list[str]]:
    """Serves every application of `folder` on `host:port`; yields their URLs; tears all down."""
    require_ray("serve")
    apps = read_applications(folder)
    cpus = _check_cpus(apps)
    check_port(host, port)
    for app in apps:  # a broken model fails here in one line, not after Ray's retries
        metadata = json.loads((folder / app.args["model"] / "metadata.json").read_text())
        load_model(folder / app.args["model"] / metadata["model"])
    import ray
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.INFO if debug else logging.WARNING)

    module = _load_app(folder)
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=debug,
        logging_level=logging.INFO if debug else logging.ERROR,
        job_config=ray.job_config.JobConfig(code_search_path=[str(folder.resolve())]),
    )
    try:
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        for app in apps:
            try:
                serve.run(module.build_app(app.args), name=app.name, route_prefix=app.route_prefix)
            except Exception as e:
                raise OnnxsmithError(
                    f"serve: application {app.name!r} did not start: {_failure(serve, app, e)}"
                ) from e
        yield [f"http://{host}:{port}{app.route_prefix}" for app in apps]
    finally:
        # The instance is ours alone: shutting Ray down stops Serve's actors with it (an
        # explicit serve.shutdown() first only adds a retry warning from the dying controller).
        ray.shutdown()
        sys.modules.pop("app", None)


def _failure(serve: ModuleType, app: Application, error: Exception) -> str:
    """The last line of the deployment's own error (a replica's traceback) or of `error`."""
    with contextlib.suppress(Exception):
        overview = serve.status().applications[app.name]
        messages = [d.message for d in overview.deployments.values() if d.message]
        error = RuntimeError(messages[0] if messages else overview.message)
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def wait_for_stop() -> None:
    """Blocks until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may take it before you)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except OSError:  # refused, not routed yet (404), or timed out
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean Serve and Ray shutdown), then SIGKILL to the whole process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        # GCS and raylet share the group; Ray's workers (own sessions) exit with their raylet.
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextmanager
def serving_in_background(
    folder: Path, *, port: int, log: Path, start_timeout: float = 150.0
) -> Iterator[str]:
    """Runs `onnxsmith serve FOLDER --port PORT` (loopback) in a child process until every route
    answers `/info`; yields `http://127.0.0.1:PORT`; stops it, Ray included, even on error.

    For tests, benchmarks and CI scripts; the child's output goes to `log`.
    """
    names = [app.name for app in read_applications(folder)]
    command = [sys.executable, "-P", "-m", "onnxsmith.cli.main", "serve", str(folder)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group, so _stop reaches Ray's daemons
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while not all(_answers(f"{base}/{name}/info") for name in names):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(log.read_text().strip().splitlines()[-5:])
                raise OnnxsmithError(f"serve: {folder} did not come up on {base}: {tail}")
            time.sleep(1.0)
        yield base
    finally:
        _stop(process)
