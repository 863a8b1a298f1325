"""`onnxsmith serve`: starts a Ray Serve folder written by `serve-export --format ray-serve`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from onnxsmith.cli.render import console
from onnxsmith.errors import UsageError
from onnxsmith.serve.ray_serve import DEFAULT_PORT
from onnxsmith.serve.ray_server import running, wait_for_stop

HELP = "serve a Ray Serve folder from serve-export on a local Ray instance (Ctrl-C stops)"
EXAMPLE = "onnxsmith serve served/ --port 8000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", metavar="DIR", help="a folder from serve-export --format ray-serve"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"serve: --port {args.port} is not a TCP port (1-65535)")
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)  # main sets DEBUG for --debug
    with running(Path(args.folder), host=args.host, port=args.port, debug=debug) as urls:
        for url in urls:
            console.print(f"serving POST {url}/predict, GET {url}/info", soft_wrap=True)
        console.print("Ctrl-C stops", highlight=False)
        wait_for_stop()
    console.print("stopped")
    return 0
