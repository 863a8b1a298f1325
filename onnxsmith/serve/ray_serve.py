"""Ray Serve hand-off: a folder with `app.py`, `serve_config.yaml` and `models/NAME/` per model.

`app.py` is onnxsmith's `runtime/ray_serve_app.py` copied verbatim (routes, validation and
batching are documented there). `serve_config.yaml` is Ray Serve's own config schema, so the
folder also runs without onnxsmith: `cd DIR && serve run serve_config.yaml`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onnxsmith.errors import UsageError
from onnxsmith.io import load_model
from onnxsmith.runtime.handoff_scripts import RAY_SERVE_APP
from onnxsmith.serve.files import copy_model, model_metadata, model_names, write_metadata

INSTALL = "pip install 'onnxsmith[cluster]'"
APP_FILE = "app.py"
CONFIG_FILE = "serve_config.yaml"
DEFAULT_PORT = 8000
_HEADER = (
    "# Ray Serve config written by `onnxsmith serve-export --format ray-serve`.\n"
    "# Start it: `onnxsmith serve DIR [--port N]`, or `cd DIR && serve run serve_config.yaml`.\n"
)


def require_ray(step: str) -> None:
    """Fails at once, in one line, when Ray Serve (the `cluster` extra) is not installed."""
    missing = [m for m in ("ray", "starlette", "yaml") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{step}: Ray Serve is not installed (no {missing[0]}) — {INSTALL}")


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How each model is served: replicas, ORT threads (= CPUs) per replica, batching."""

    replicas: int = 1
    threads: int = 1
    max_batch_size: int = 32
    batch_wait_ms: float = 2.0

    def check(self) -> None:
        if min(self.replicas, self.threads, self.max_batch_size) < 1 or self.batch_wait_ms < 0:
            raise UsageError(
                "serve-export: --instances, --threads and --max-batch-size must be at least 1, "
                "--batch-wait-ms at least 0"
            )


def write_ray_serve_app(
    sources: Sequence[Path],
    out: Path,
    *,
    names: Sequence[str] | None = None,
    options: ServeOptions = ServeOptions(),
) -> list[Path]:
    """Writes the app, the config and `models/NAME/{model.onnx,metadata.json}`; returns them."""
    require_ray("serve-export")
    options.check()
    import yaml

    written = []
    applications = []
    for source, name in zip(sources, model_names(sources, names), strict=True):
        folder = out / "models" / name
        written.append(copy_model(source, folder))
        written.append(write_metadata(folder / "metadata.json", model_metadata(load_model(source))))
        args = {
            "model": f"models/{name}",
            "replicas": options.replicas,
            "threads": options.threads,
            "max_batch_size": options.max_batch_size,
            "batch_wait_timeout_s": options.batch_wait_ms / 1e3,
        }
        applications.append(
            {"name": name, "route_prefix": f"/{name}", "import_path": "app:build_app", "args": args}
        )
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": DEFAULT_PORT},
        "applications": applications,
    }
    (out / CONFIG_FILE).write_text(_HEADER + yaml.safe_dump(config, sort_keys=False))
    shutil.copyfile(RAY_SERVE_APP, out / APP_FILE)
    return [out / APP_FILE, out / CONFIG_FILE, *written]


@dataclasses.dataclass(frozen=True)
class Application:
    """One application of a `serve_config.yaml`: its name, route and builder arguments."""

    name: str
    route_prefix: str
    args: dict[str, Any]

    @property
    def cpus(self) -> int:
        return int(self.args.get("replicas", 1)) * int(self.args.get("threads", 1))


def read_applications(folder: Path) -> list[Application]:
    """The applications of `folder/serve_config.yaml`, checked enough to start them."""
    import yaml

    redo = f"re-export it: onnxsmith serve-export MODEL --format ray-serve -o {folder}"
    if not (folder / APP_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise UsageError(f"serve: {folder} has no {APP_FILE} and {CONFIG_FILE} — {redo}")
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text())
        apps = [
            Application(a["name"], a["route_prefix"], dict(a["args"]))
            for a in config["applications"]
        ]
        for app in apps:
            if not (folder / app.args["model"] / "metadata.json").is_file():
                raise UsageError(
                    f"serve: {folder / CONFIG_FILE}: application {app.name!r} has no "
                    f"{app.args['model']}/metadata.json — {redo}"
                )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise UsageError(
            f"serve: {folder / CONFIG_FILE} is not a valid config ({e}) — {redo}"
        ) from e
    if not apps:
        raise UsageError(f"serve: {folder / CONFIG_FILE} lists no applications — {redo}")
    return apps
