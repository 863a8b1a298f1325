"""`onnxsmith merge`: one merged graph vs N separate sessions, ensemble accuracy, cascades, and
chain mode vs `onnx.compose.merge_models`.

Usage: .venv/bin/python -P bench/merge_bench.py [--out bench/out/merge] [--seconds 6]

1. Trains three CNNs of different sizes on scikit-learn digits with torch (train 1000 / val 300 /
   test 497 images), exports them with torch.onnx.export at three opsets (11 and 13 with the
   TorchScript exporter, 18 with the dynamo exporter: IR 7 and 10).
2. Accuracy on the test split of each member and of the mean / vote / fitted weighted / stacked
   (NNLS and logistic, fitted on the val split) ensembles, and a small→large cascade sweep.
3. Latency (interleaved, ratios with bootstrap 95 % intervals), session memory (RSS of a fresh
   process) and file size of the merged graph vs the members as N separate sessions, for the
   digits CNNs and for PP-OCR's direction classifier ×3 (a real opset-11 model).
4. Chain: pre-processing (opset 17) → CNN (opset 13) → post-processing (opset 11), and PP-OCR
   cls → post-processing, merged by onnxsmith and by onnx.compose.merge_models.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from sklearn.datasets import load_digits

from onnxsmith.io import load_model, save_model
from onnxsmith.merge import merge_models
from onnxsmith.merge.evaluate import evaluate_merge
from onnxsmith.merge.sessions import SeparateMembers
from onnxsmith.merge.stacking import fit_stack


def conv_block(cin: int, cout: int, *, pool: bool) -> list[torch.nn.Module]:
    layers = [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]
    return [*layers, torch.nn.MaxPool2d(2)] if pool else layers


def architectures() -> dict[str, torch.nn.Module]:
    """small (1.4k params), medium (22k) and large (0.36M) CNNs for 8x8 digits."""
    return {
        "small": torch.nn.Sequential(
            *conv_block(1, 8, pool=True), torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10)
        ),
        "medium": torch.nn.Sequential(
            *conv_block(1, 16, pool=False),
            *conv_block(16, 32, pool=True),
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 16, 32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 10),
        ),
        "large": torch.nn.Sequential(
            *conv_block(1, 64, pool=False),
            *conv_block(64, 128, pool=False),
            *conv_block(128, 128, pool=True),
            torch.nn.Flatten(),
            torch.nn.Linear(128 * 16, 64),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(64, 10),
        ),
    }


def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    split = {"train": order[:1000], "val": order[1000:1300], "test": order[1300:]}
    return {k: (x[i], y[i]) for k, i in split.items()}


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(12):
        for batch in torch.randperm(len(yt)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
    return model.eval()


def export(model: torch.nn.Module, path: Path, opset: int) -> Path:
    example = (torch.zeros(2, 1, 8, 8),)
    if opset >= 18:
        torch.onnx.export(
            model, example, path, input_names=["image"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset, dynamo=True,
        )  # fmt: skip
    else:
        axes = {0: "batch"}
        torch.onnx.export(
            model, example, path, input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes}, opset_version=opset, dynamo=False,
        )  # fmt: skip
    return path


def stage_model(nodes, inputs, outputs, opset: int, initializers=()) -> ir.Model:
    graph = helper.make_graph(nodes, "stage", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return ir.from_proto(proto)


def preprocess(opset: int = 17) -> ir.Model:
    """uint8 pixels 0..16 [batch, 1, 8, 8] -> float image / 16 (what the CNNs were trained on)."""
    return stage_model(
        [
            helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "scale"], ["image"]),
        ],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        opset,
        [numpy_helper.from_array(np.array(1 / 16, np.float32), "scale")],
    )


def postprocess(score: str, classes: int, opset: int = 11, *, logits: bool = True) -> ir.Model:
    """scores -> (softmax when they are logits) top class and its probability."""
    first = (
        helper.make_node("Softmax", [score], ["probs"], axis=-1)
        if logits
        else helper.make_node("Identity", [score], ["probs"])
    )
    return stage_model(
        [
            first,
            helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
            helper.make_node("ReduceMax", ["probs"], ["confidence"], axes=[1], keepdims=0),
        ],
        [helper.make_tensor_value_info(score, TensorProto.FLOAT, ["batch", classes])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch"]),
        ],
        opset,
    )


def timing_row(
    name: str, merged: ir.Model, members: list, feeds: dict[str, list], seconds: float
) -> dict:
    """Merged session vs members as separate sessions (+ numpy glue) vs the merged graph under
    ORT's parallel executor, interleaved per batch size. One intra-op thread each: ORT's worker
    threads spin after a run, so sessions timed round-robin with default pools slow each other
    down; the parallel executor gets two inter-op threads (the machine's two cores)."""
    sessions = [
        create_session(merged, threads=1),
        SeparateMembers(members, merged, threads=1),
        create_session(merged, threads=1, inter_op_threads=2),
    ]
    row: dict = {"model": name}
    for batch, feed_list in feeds.items():
        ms = time_interleaved(sessions, feed_list, seconds=seconds)
        row[f"b{batch}"] = {
            "merged_ms": float(np.median(ms[0])),
            "separate_ms": float(np.median(ms[1])),
            "merged_vs_separate": ratio_ci95(ms[0], ms[1]),
            "parallel_vs_separate": ratio_ci95(ms[2], ms[1]),
        }
    return row


def session_rss_mb(paths: list[Path], feed_path: Path) -> float:
    """RSS growth (MB, median of 3 fresh processes) from opening one session per path and
    running one feed."""
    code = textwrap.dedent(
        f"""
        import numpy as np, onnxruntime as ort
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        feed = dict(np.load({str(feed_path)!r}))
        before = rss()
        sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"])
                    for p in {[str(p) for p in paths]!r}]
        for s in sessions:
            s.run(None, {{i.name: feed[i.name] for i in s.get_inputs()}})
        print(rss() - before)
        """
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(3)
    ]
    return float(np.median([float(r.stdout.strip()) for r in runs]))


def file_mb(path: Path) -> float:
    """The model file plus its external data file, if any."""
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6


def accuracy(model: ir.Model | Path, x: np.ndarray, y: np.ndarray, output: int = 0) -> float:
    out = create_session(model).run(None, {"image": x})[output]
    predicted = out if out.ndim == 1 else out.argmax(axis=1)
    return float(np.mean(predicted == y))


def compose_chain(stages: list[ir.Model], io_maps: list[list[tuple[str, str]]]) -> dict:
    """onnx.compose.merge_models as a user would call it: first as is, then after converting
    every stage to one opset and IR version (what it requires)."""
    protos = [ir.to_proto(s) for s in stages]
    result: dict = {}
    try:
        onnx.compose.merge_models(protos[0], protos[1], io_map=io_maps[0])
        result["as_is"] = "ok"
    except Exception as e:  # report whatever it raises
        result["as_is"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    target = max(p.opset_import[0].version for p in protos)
    converted = [onnx.version_converter.convert_version(p, target) for p in protos]
    ir_version = max(p.ir_version for p in converted)
    for p in converted:
        p.ir_version = ir_version
    chained = converted[0]
    for k, (nxt, io_map) in enumerate(zip(converted[1:], io_maps, strict=True)):
        # names from stage k >= 1 carry the prefix compose gave them
        earlier = f"s{k}/" if k else ""
        io_map = [(earlier + a, b) for a, b in io_map]
        chained = onnx.compose.merge_models(chained, nxt, io_map=io_map, prefix2=f"s{k + 1}/")
    onnx.checker.check_model(chained, full_check=True)
    result["model"] = chained
    return result


def chain_rows(
    name: str, stages: list[ir.Model], io_maps, feed: dict, folder: Path, seconds: float
) -> dict:
    ours = merge_models(stages, "chain")
    theirs = compose_chain(stages, io_maps)
    ours_path = save_model(ours, folder / f"chain_{name}_onnxsmith.onnx")
    theirs_path = folder / f"chain_{name}_compose.onnx"
    onnx.save(theirs["model"], theirs_path)
    a, b = create_session(ours_path, threads=1), create_session(theirs_path, threads=1)
    outs_a = dict(zip([o.name for o in a.get_outputs()], a.run(None, feed), strict=True))
    last = f"s{len(stages) - 1}/"  # compose prefixed the last stage's outputs
    names_b = [o.name.removeprefix(last) for o in b.get_outputs()]
    outs_b = dict(zip(names_b, b.run(None, feed), strict=True))
    diff = max(
        float(np.abs(outs_a[k].astype(np.float64) - outs_b[k]).max()) for k in outs_a if k in outs_b
    )
    ms = time_interleaved([a, b], [feed], seconds=seconds)
    return {
        "chain": name,
        "compose_as_is": theirs["as_is"],
        "onnxsmith_mb": ours_path.stat().st_size / 1e6,
        "compose_mb": theirs_path.stat().st_size / 1e6,
        "onnxsmith_nodes": len(ir.to_proto(ours).graph.node),
        "compose_nodes": len(theirs["model"].graph.node),
        "outputs_onnxsmith": sorted(outs_a),
        "outputs_compose": sorted(outs_b),
        "max_abs_diff": diff,
        "onnxsmith_vs_compose": ratio_ci95(ms[0], ms[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out/merge")
    parser.add_argument("--seconds", type=float, default=6.0, help="per interleaved timing run")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the CNNs a previous run trained in --out"
    )
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    split = digits()
    paths = {}
    for seed, ((name, net), opset) in enumerate(
        zip(architectures().items(), (11, 13, 18), strict=True)
    ):
        paths[name] = folder / f"digits_{name}.onnx"
        if not (args.reuse and paths[name].exists()):
            export(train(net, *split["train"], seed=seed), paths[name], opset)
    members = [load_model(p) for p in paths.values()]
    results: dict = {"members": {}}

    # Fit and test data as multi-sample .npz files (one image per feed).
    for part in ("val", "test"):
        x, y = split[part]
        np.savez(folder / f"{part}.npz", image=x)
        np.savez(folder / f"{part}_labels.npz", label=y)
    x_test, y_test = split["test"]
    for name, path in paths.items():
        model = onnx.load(path)
        results["members"][name] = {
            "opset": model.opset_import[0].version,
            "ir": model.ir_version,
            "kb": file_mb(path) * 1e3,
            "test_accuracy": accuracy(path, x_test, y_test),
        }

    # Ensembles: accuracy on test; weights fitted on val.
    val, val_labels = folder / "val.npz", folder / "val_labels.npz"
    fitted = fit_stack(members, val, labels=val_labels, softmax_scores=True)
    logistic = fit_stack(members, val, labels=val_labels, method="logistic")
    ensembles = {
        "mean (softmax)": merge_models(members, "mean", softmax=True),
        "vote": merge_models(members, "vote", softmax=True),
        "max (softmax)": merge_models(members, "max", softmax=True),
        "weighted (NNLS on val, normalized)": merge_models(
            members, "weighted", weights=fitted.weights, softmax=True
        ),
        "stack NNLS (val)": merge_models(members, "stack", stack=fitted, softmax=True),
        "stack logistic (val)": merge_models(members, "stack", stack=logistic),
    }
    results["ensembles"] = {
        name: accuracy(model, x_test, y_test, output=1 if name == "vote" else 0)
        for name, model in ensembles.items()
    }
    results["fitted_weights"] = {"nnls": fitted.weights, "logistic_share": logistic.weights}

    # Cascade small -> large on the test split.
    cascade = merge_models([members[0], members[2]], "cascade", threshold=0.9)
    sweep = evaluate_merge(
        [members[0], members[2]],
        cascade,
        folder / "test.npz",
        labels=folder / "test_labels.npz",
        thresholds=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01),
        seconds=args.seconds * 2,
    )
    results["cascade"] = sweep.as_dict()

    # Merged vs separate: latency, memory, file size.
    rng = np.random.default_rng(1)
    digit_feeds = {
        1: [{"image": x_test[i : i + 1]} for i in range(32)],
        64: [{"image": x_test[i : i + 64]} for i in range(0, 320, 64)],
    }
    mean_path = save_model(ensembles["mean (softmax)"], folder / "digits_mean.onnx")
    np.savez(folder / "digits_feed.npz", image=x_test[:1])
    results["serving"] = [timing_row("digits CNNs x3", ensembles["mean (softmax)"], members,
                                     digit_feeds, args.seconds)]  # fmt: skip
    results["serving"][0].update(
        merged_mb=file_mb(mean_path),
        members_mb=sum(file_mb(p) for p in paths.values()),
        merged_rss_mb=session_rss_mb([mean_path], folder / "digits_feed.npz"),
        separate_rss_mb=session_rss_mb(list(paths.values()), folder / "digits_feed.npz"),
    )
    import rapidocr_onnxruntime

    cls_path = Path(rapidocr_onnxruntime.__file__).parent / "models"
    cls_path = cls_path / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    cls = load_model(cls_path)
    cls3 = merge_models([cls, cls, cls], "mean")
    cls3_path = save_model(cls3, folder / "cls_x3.onnx")
    crops = rng.uniform(-1, 1, (8, 3, 48, 192)).astype(np.float32)
    np.savez(folder / "cls_feed.npz", x=crops[:1])
    row = timing_row(
        "PP-OCR cls x3", cls3, [cls_path] * 3,
        {1: [{"x": crops[i : i + 1]} for i in range(8)], 8: [{"x": crops}]}, args.seconds,
    )  # fmt: skip
    row.update(
        merged_mb=file_mb(cls3_path),
        members_mb=3 * file_mb(cls_path),
        merged_rss_mb=session_rss_mb([cls3_path], folder / "cls_feed.npz"),
        separate_rss_mb=session_rss_mb([cls_path] * 3, folder / "cls_feed.npz"),
    )
    results["serving"].append(row)

    # Chains vs onnx.compose.
    pixels = (x_test[:16] * 16).round().astype(np.uint8)
    results["chain"] = [
        chain_rows(
            "pre>digits medium>post",
            [preprocess(), load_model(paths["medium"]), postprocess("logits", 10)],
            [[("image", "image")], [("logits", "logits")]],
            {"pixels": pixels},
            folder,
            args.seconds,
        ),
        chain_rows(
            "PP-OCR cls>post",
            [cls, postprocess("save_infer_model/scale_0.tmp_1", 2, opset=17, logits=False)],
            [[("save_infer_model/scale_0.tmp_1", "save_infer_model/scale_0.tmp_1")]],
            {"x": crops},
            folder,
            args.seconds,
        ),
    ]
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
