"""Ray cluster primitives: connect, find the node for a `--target`, run a function there.

A device joins with `ray start --address HEAD --labels hw=rpi5 --resources '{"timing": 1}'`;
`--target hw=rpi5` then runs the measurements on it (`runtime.remote`). Every task is pinned
to a node chosen here (by its `ray.io/node-id` label), so a failure can name the node; a
timing task also takes the node's one `timing` resource, so two timing tasks never share a
node. Tasks are never retried by Ray: a half-done step fails, and the user reruns it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from onnxsmith.errors import ClusterError, OnnxsmithError, UsageError, name_list

INSTALL = "pip install 'onnxsmith[cluster]'"
TIMING_RESOURCE = "timing"
NODE_ID_LABEL = "ray.io/node-id"
_POLL_S = 2.0  # how often a wait checks that the node is still alive


def require_ray(step: str) -> ModuleType:
    """The `ray` module, or a one-line error with the pip command."""
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise UsageError(f"{step}: --target needs Ray, which is not installed — {INSTALL}") from e


@dataclasses.dataclass(frozen=True)
class Target:
    """A node label to run on, written `KEY=VALUE` (`hw=rpi5`)."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def parse_target(text: str, step: str) -> Target:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip() or "=" in value:
        raise UsageError(f"{step}: --target expects KEY=VALUE like hw=rpi5, got {text!r}")
    return Target(key.strip(), value.strip())


@dataclasses.dataclass(frozen=True)
class Node:
    """One alive node of the cluster, as the cluster describes it."""

    node_id: str
    labels: Mapping[str, str]
    resources: Mapping[str, float]

    @property
    def timing_slots(self) -> int:
        return int(self.resources.get(TIMING_RESOURCE, 0))

    @property
    def cpus(self) -> int:
        return int(self.resources.get("CPU", 0))

    def matches(self, target: Target | None) -> bool:
        return target is None or self.labels.get(target.key) == target.value

    def describe(self) -> str:
        own = ", ".join(f"{k}={v}" for k, v in sorted(self.user_labels().items()))
        return f"node {self.node_id[:12]}" + (f" ({own})" if own else "")

    def user_labels(self) -> dict[str, str]:
        return {k: v for k, v in self.labels.items() if not k.startswith("ray.io/")}


def connect(address: str | None, step: str) -> str:
    """Joins the cluster at `address` (default `$RAY_ADDRESS`) unless already connected."""
    ray = require_ray(step)
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageError(
            f"{step}: --target needs a Ray cluster — pass --cluster HOST:PORT or set "
            "RAY_ADDRESS (start one with 'ray start --head')"
        )
    _check_reachable(address, step)
    # Ray puts the driver's working folder first on every worker's sys.path: run from a
    # checkout (or any folder holding an `onnxsmith/`), the nodes would import that instead
    # of their installed onnxsmith. An empty folder is what they get instead.
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="onnxsmith-ray-") as empty:
        os.chdir(empty)
        try:
            ray.init(
                address=address,
                logging_level=logging.ERROR,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterError(
                f"{step}: cannot join the Ray cluster at {address} ({reason})"
            ) from e
        finally:
            os.chdir(here)
    return address


def _check_reachable(address: str, step: str) -> None:
    """Fails in seconds where `ray.init` would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as e:
        raise ClusterError(
            f"{step}: no Ray cluster answers at {address} ({e}) — start the head with "
            "'ray start --head' or fix --cluster / RAY_ADDRESS"
        ) from e


def alive_nodes(step: str) -> list[Node]:
    ray = require_ray(step)
    return [
        Node(n["NodeID"], dict(n.get("Labels") or {}), dict(n.get("Resources") or {}))
        for n in sorted(ray.nodes(), key=lambda n: n["NodeID"])
        if n.get("Alive")
    ]


def offered_labels(nodes: Sequence[Node]) -> list[str]:
    return sorted({f"{k}={v}" for node in nodes for k, v in node.user_labels().items()})


def resolve(target: Target, step: str) -> Node:
    """The node that will time for `target`: alive, labelled so, with a `timing` resource."""
    nodes = alive_nodes(step)
    labelled = [n for n in nodes if n.matches(target)]
    if not labelled:
        offered = offered_labels(nodes)
        raise ClusterError(
            f"{step}: no node of the cluster has label {target} — the cluster offers "
            f"{name_list(offered, 10) if offered else 'no labels'}; add one with: ray start "
            f"--address HEAD --labels {target} --resources '{{\"{TIMING_RESOURCE}\": 1}}'"
        )
    timing = [n for n in labelled if n.timing_slots >= 1]
    if not timing:
        raise ClusterError(
            f"{step}: {labelled[0].describe()} has no '{TIMING_RESOURCE}' resource, so nothing "
            f"can time there alone — restart it with --resources '{{\"{TIMING_RESOURCE}\": 1}}'"
        )
    return timing[0]


def here(target: Target, step: str) -> Node | None:
    """This node, when this process is a cluster task already running on a `target` node."""
    ray = require_ray(step)
    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.get_task_id() is None:
        return None
    labels = dict(context.get_node_labels())
    node = Node(context.get_node_id(), labels, {})
    return node if node.matches(target) else None


# -- running on a node ----------------------------------------------------------------------


def submit(node: Node, function: Callable[..., Any], *args: Any, timing: bool) -> Any:
    """Starts `function(*args)` on `node`; a timing task also takes its `timing` resource."""
    ray = require_ray("cluster")
    remote = ray.remote(function).options(
        num_cpus=1,
        resources={TIMING_RESOURCE: 1} if timing else {},
        label_selector={NODE_ID_LABEL: node.node_id},
        max_retries=0,  # a rerun is the user's call: a half-done step must fail, not repeat
    )
    return remote.remote(*args)


def wait_any(refs: Sequence[Any], where: Mapping[Any, tuple[Node, str]]) -> list[Any]:
    """The refs among `refs` that finished; raises, naming the step and node, if the node of
    an unfinished one left the cluster. `where` maps each ref to (its node, its step)."""
    ray = require_ray("cluster")
    while True:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_S)
        if ready:
            return ready
        alive = {n.node_id for n in alive_nodes("cluster")}
        for ref in refs:
            node, step = where[ref]
            if node.node_id not in alive:
                ray.cancel(ref, force=True)
                raise ClusterError(
                    f"{step}: {node.describe()} left the cluster mid-run — nothing written; "
                    "bring it back (or choose another --target) and rerun"
                )


def result(ref: Any, node: Node, step: str) -> Any:
    """The value of a finished task; Ray's failures become one-line errors naming the node."""
    ray = require_ray(step)
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, OnnxsmithError):
            raise type(cause)(f"{cause!s} (on {node.describe()})") from e
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise ClusterError(
            f"{step}: the task on {node.describe()} failed ({type(cause).__name__}: {reason}) "
            "— nothing written; rerun with --debug"
        ) from e
    except ray.exceptions.RayError as e:
        raise ClusterError(
            f"{step}: {node.describe()} was lost mid-run ({type(e).__name__}) — nothing "
            "written; bring the node back (or choose another --target) and rerun"
        ) from e


def call(node: Node, function: Callable[..., Any], *args: Any, timing: bool, step: str) -> Any:
    """Runs `function(*args)` on `node` and returns its value (see `submit`, `result`)."""
    ref = submit(node, function, *args, timing=timing)
    wait_any([ref], {ref: (node, step)})
    return result(ref, node, step)
