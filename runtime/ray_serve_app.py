"""The Ray Serve application `onnxsmith serve-export --format ray-serve` writes as `app.py`.

Copied verbatim next to `serve_config.yaml` and `models/NAME/{model.onnx,metadata.json}`; it is
never imported by onnxsmith. It imports only the standard library, numpy, onnxruntime and Ray
Serve, so the folder runs wherever those are installed: `onnxsmith serve DIR`, or Ray's own
`cd DIR && serve run serve_config.yaml`. It lives in runtime/ because runtime owns every ORT
session onnxsmith creates or writes (like `rss_probe.py`, it builds its own).

One application per model at `/NAME`, one deployment each; every replica holds one ORT session.

- `POST /NAME/predict` with `{"inputs": {"INPUT": nested lists}}` answers
  `{"outputs": {"OUTPUT": nested lists}}`. Floats travel as JSON numbers, which round-trip
  float32 exactly.
- `GET /NAME/info` answers the model's metadata (signature, opsets, onnxsmith steps, batching)
  and the answering replica's counts of requests and batches.
- A request that does not match the model's signature (names, dtypes, ranks, static dims) gets
  400 and `{"error": "one line"}`; a body over `MAX_BODY_BYTES` gets 413; ORT failing on a
  feed it accepted gets 500.
- Requests are batched across clients with `@serve.batch` when every input and output has the
  same symbolic leading dim; requests whose other dims differ run in separate groups.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

MAX_BODY_BYTES = 64 * 2**20
Feed = dict[str, np.ndarray]


class BadRequest(ValueError):
    """A request the model cannot take; its message goes back to the client with status 400."""


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _to_array(spec: dict[str, Any], value: Any) -> np.ndarray:
    """`value` (nested JSON lists) as an array of the input's dtype, or BadRequest."""
    name, dtype = spec["name"], np.dtype(spec["dtype"])
    try:
        array = np.array(value)
    except ValueError as e:  # ragged nesting
        raise BadRequest(f"input {name!r} is not a rectangular array of numbers") from e
    if array.dtype.kind not in "biuf" or array.size == 0:
        raise BadRequest(f"input {name!r} must be a non-empty array of numbers")
    if dtype.kind == "b" and array.dtype.kind != "b":
        raise BadRequest(f"input {name!r} takes booleans (true/false)")
    if dtype.kind in "iu":
        if array.dtype.kind not in "iu":
            raise BadRequest(f"input {name!r} takes integers ({dtype}), got other numbers")
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"input {name!r} has values outside {dtype}'s range")
    return array.astype(dtype)


def validate(specs: Sequence[dict[str, Any]], body: Any) -> Feed:
    """The feed in a request body, checked against the model's inputs (see module docstring)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise BadRequest('the body must be a JSON object {"inputs": {"NAME": array, ...}}')
    given = body["inputs"]
    names = [spec["name"] for spec in specs]
    if sorted(given) != sorted(names):
        missing = [n for n in names if n not in given]
        unknown = [n for n in given if n not in names]
        raise BadRequest(f"inputs must be {names}: missing {missing}, unknown {unknown}")
    feed: Feed = {}
    sizes: dict[str, int] = {}  # symbolic dim -> the size this request gives it
    for spec in specs:
        array = _to_array(spec, given[spec["name"]])
        shape = spec["shape"]
        if shape is not None:
            if array.ndim != len(shape):
                raise BadRequest(
                    f"input {spec['name']!r} has shape {list(array.shape)}, the model takes "
                    f"{_shape_text(shape)} (rank {len(shape)})"
                )
            for axis, (dim, size) in enumerate(zip(shape, array.shape, strict=True)):
                if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
                    raise BadRequest(
                        f"input {spec['name']!r} has {size} along {dim!r} (axis {axis}), "
                        f"another input has {sizes[dim]}"
                    )
                if isinstance(dim, int) and dim != size:
                    raise BadRequest(
                        f"input {spec['name']!r} has shape {list(array.shape)}, the model takes "
                        f"{_shape_text(shape)} (axis {axis} must be {dim})"
                    )
        feed[spec["name"]] = array
    return feed


def batch_dim(metadata: dict[str, Any]) -> str | None:
    """The symbolic leading dim every input and output shares, or None (no batching)."""
    leading = {
        spec["shape"][0] if spec["shape"] else None
        for spec in metadata["inputs"] + metadata["outputs"]
    }
    dim = leading.pop() if len(leading) == 1 else None
    return dim if isinstance(dim, str) else None


def _json(content: Any, status: int = 200) -> Response:
    # Python's json (not starlette's strict one) so that a NaN output is answered, not a 500.
    return Response(json.dumps(content), status_code=status, media_type="application/json")


@serve.deployment
class OnnxModel:
    """One replica: an ORT session on the model in `folder` and its batched predict."""

    def __init__(
        self, folder: str, *, threads: int, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        self.metadata = json.loads((Path(folder) / "metadata.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = str(Path(folder) / self.metadata["model"])
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.batch_dim = batch_dim(self.metadata)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}  # this replica's
        self.metadata["serving"] = {
            "max_batch_size": max_batch_size,
            "batch_wait_timeout_s": batch_wait_timeout_s,
            "batched_across_requests": self.batch_dim is not None,
            "intra_op_threads": threads,
        }
        batched: Any = self.predict_batch  # serve.batch's setters are not in its type hints
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def __call__(self, request: Request) -> Response:
        route = request.url.path[len(request.scope.get("root_path", "")) :].strip("/")
        if route not in ("info", "predict"):
            return _json({"error": f"no route {route!r}: use GET info or POST predict"}, 404)
        method = "GET" if route == "info" else "POST"
        if request.method != method:
            return _json({"error": f"{route} takes {method}, not {request.method}"}, 405)
        if route == "info":
            return _json({**self.metadata, "replica_stats": self.stats})
        declared = request.headers.get("content-length", "0")
        too_big = {"error": f"body over {MAX_BODY_BYTES} bytes: split the batch"}
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            return _json(too_big, 413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:  # chunked, without a length up front
            return _json(too_big, 413)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, or nested too deep
            return _json({"error": f"the body is not JSON: {_first_line(e)}"}, 400)
        try:
            feed = validate(self.metadata["inputs"], parsed)
        except BadRequest as e:
            return _json({"error": str(e)}, 400)
        result = await self.predict_batch(feed)
        if isinstance(result, Exception):
            # ORT's InvalidArgument: a feed the signature checks could not catch (e.g. dims two
            # inputs must share under different names); anything else failed inside the model.
            status = 400 if type(result).__name__ == "InvalidArgument" else 500
            return _json({"error": f"the model refused the feed: {_first_line(result)}"}, status)
        return _json({"outputs": {name: value.tolist() for name, value in result.items()}})

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict_batch(self, feeds: list[Feed]) -> list[Feed | Exception]:
        self.stats["requests"] += len(feeds)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(feeds))
        return await asyncio.to_thread(self._run_groups, feeds)

    def _run(self, feed: Feed) -> Feed:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed), strict=True))

    def _run_groups(self, feeds: list[Feed]) -> list[Feed | Exception]:
        """Runs feeds whose non-batch dims agree as one batch; a failing group runs one by one,
        so that one bad feed fails only its own request."""
        groups: dict[Any, list[int]] = {}
        for i, feed in enumerate(feeds):
            key = tuple((k, v.shape[1:]) for k, v in sorted(feed.items())) if self.batch_dim else i
            groups.setdefault(key, []).append(i)
        results: list[Feed | Exception] = [{} for _ in feeds]
        for members in groups.values():
            try:
                merged = self._run(
                    {k: np.concatenate([feeds[i][k] for i in members]) for k in feeds[members[0]]}
                )
            except Exception:
                for i in members:
                    results[i] = self._run_alone(feeds[i])
                continue
            ends = np.cumsum([len(next(iter(feeds[i].values()))) for i in members])
            for i, start, end in zip(members, [0, *ends[:-1]], ends, strict=True):
                results[i] = {k: v[start:end] for k, v in merged.items()}
        return results

    def _run_alone(self, feed: Feed) -> Feed | Exception:
        try:
            return self._run(feed)
        except Exception as e:
            return e


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder; `args` come from `serve_config.yaml`.

    `model` is the model's folder relative to this file; `replicas`, `threads` (ORT intra-op
    threads and CPUs reserved per replica), `max_batch_size` and `batch_wait_timeout_s` tune it.
    """
    folder = Path(__file__).resolve().parent / args["model"]
    threads = int(args.get("threads", 1))
    max_batch_size = int(args.get("max_batch_size", 32))
    model: Any = OnnxModel  # a serve Deployment; the decorator's type hints keep the class
    deployment = model.options(
        name=Path(args["model"]).name,
        num_replicas=int(args.get("replicas", 1)),
        ray_actor_options={"num_cpus": threads},
        # Serve's default (5 requests in a replica at once) would cap every batch at 5; twice
        # the batch lets the next batch fill while one runs.
        max_ongoing_requests=2 * max_batch_size,
    )
    return deployment.bind(
        str(folder),
        threads=threads,
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=float(args.get("batch_wait_timeout_s", 0.002)),
    )
