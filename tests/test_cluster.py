"""`--target` and recipe fan-out on a real Ray cluster: three nodes started on this machine.

The cluster (a head labelled hw=host, workers hw=edge and hw=doomed, one CPU and one `timing`
resource each) is started once for the module and killed after it, even on failure. Where a
measurement ran is checked by node id, never by timing. The last test kills hw=doomed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest
from onnxsmith.runtime.cpu import CpuFacts
from onnxsmith.runtime.timer import LocalTimer
from quant_models import mlp, sequence_feeds, write_feeds
from raycluster import ENV, local_cluster

from onnxsmith.io import save_model
from onnxsmith.quantize import quantize
from onnxsmith.recipe.chains import expand
from onnxsmith.recipe.runner import Planner, RunLog
from onnxsmith.recipe.spec import load_recipe, parse_recipe
from onnxsmith.samples import tiny_cnn

try:
    import ray
except ImportError:  # pragma: no cover - the cluster extra is part of `make test`
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="needs the cluster extra (Ray)")
pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        patch.delenv("RAY_ADDRESS", raising=False)
        with local_cluster(("edge", "hw=edge"), ("doomed", "hw=doomed")) as running:
            try:
                yield running
            finally:
                ray.shutdown()


def node_id(label: str) -> str:
    key, value = label.split("=")
    (found,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Labels"].get(key) == value]
    return found


@pytest.fixture
def cnn(tmp_path) -> Path:
    return save_model(tiny_cnn(seed=0), tmp_path / "cnn.onnx")


# -- no cluster needed ----------------------------------------------------------------------


def test_target_without_ray_fails_at_once_with_the_pip_command(cli, cnn, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    for verb in (
        ["bench", cnn],
        ["prune", cnn, "-o", cnn.with_name("p.onnx"), "--sparsity", "0.3"],
    ):
        code, out, err = cli(*verb, "--target", "hw=edge")
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "pip install 'onnxsmith[cluster]'" in err
    assert not cnn.with_name("p.onnx").exists()


@pytest.mark.parametrize(
    ("flags", "machine", "saturates", "lanes"),
    [
        ({"avx", "avx2"}, "x86_64", True, 8),  # AVX2 without VNNI: 7-bit weights
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", False, 16),
        ({"asimd", "asimddp"}, "aarch64", False, 4),
    ],
)
def test_cpu_facts_decide_from_the_given_cpu(flags, machine, saturates, lanes):
    facts = CpuFacts(frozenset(flags), machine)
    assert facts.int8_saturates() is saturates and facts.simd_block()[0] == lanes


def test_quantize_takes_int8_saturation_from_the_timer_cpu(tmp_path):
    """Weight bits follow the target's CPU, not this one's: a CPU without VNNI gets 7-bit
    weights (8-bit accuracy measured on a VNNI host would hide its saturation), one with
    VNNI 8-bit — whichever of the two this machine is not."""
    here = CpuFacts.here()
    other = {"avx", "avx2"} if not here.int8_saturates() else {"avx2", "avx512f", "avx512_vnni"}

    class OtherCpu(LocalTimer):
        def cpu(self) -> CpuFacts:
            return CpuFacts(frozenset(other), "x86_64")

    model = save_model(mlp(), tmp_path / "mlp.onnx")
    calib = write_feeds(tmp_path / "calib", sequence_feeds(6))
    out = tmp_path / "int8.onnx"
    report = quantize(
        model, out, calib=calib, latency_aware=False, timing_seconds=0.2, timer=OtherCpu()
    )
    assert report.result.weight_bits == (8 if here.int8_saturates() else 7)


# -- on the cluster -------------------------------------------------------------------------


@needs_ray
def test_bench_target_measures_on_the_labelled_node(cli, cluster, cnn, tmp_path):
    out = tmp_path / "bench.json"
    code, _, err = cli(
        "bench", cnn, "--target", "hw=edge", "--cluster", cluster.address, "--runs", "5",
        "--json", out,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["machine"]["target"] == "hw=edge"
    assert result["machine"]["node_id"] == node_id("hw=edge") != node_id("hw=host")
    model = result["models"][0]
    assert len(model["sweep"][0]["latency_ms"]) and model["peak_rss_mb"] > 0  # memory there too


@needs_ray
def test_two_targets_side_by_side_in_one_report(cli, cluster, cnn, tmp_path):
    report = tmp_path / "report"
    code, out, err = cli(
        "bench", cnn, "--target", "hw=edge", "--target", "hw=host", "--cluster",
        cluster.address, "--runs", "5", "--no-memory", "--report", report,
    )  # fmt: skip
    assert code == 0, err
    assert "targets side by side" in out
    targets = json.loads((report / "report.json").read_text())["targets"]
    assert [t["machine"]["target"] for t in targets] == ["hw=edge", "hw=host"]
    assert [t["machine"]["node_id"] for t in targets] == [node_id("hw=edge"), node_id("hw=host")]
    assert "targets side by side" in (report / "report.md").read_text()
    assert (report / "hw=edge" / "report.html").is_file()


@needs_ray
def test_quantize_target_names_the_target_in_report_and_metadata(cli, cluster, tmp_path):
    model = save_model(mlp(), tmp_path / "mlp.onnx")
    calib = write_feeds(tmp_path / "calib", sequence_feeds(6))
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    code, _, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--timing-seconds", "0.2",
        "--no-latency-aware", "--target", "hw=edge", "--cluster", cluster.address,
        "--report", report,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((report / "report.json").read_text())["options"]["target"] == "hw=edge"
    assert "tuned for: target hw=edge" in (report / "report.md").read_text()
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["onnxsmith.quantize"])["target"] == "hw=edge"


@needs_ray
def test_a_label_no_node_has_lists_the_offered_ones(cli, cluster, cnn, tmp_path):
    out = tmp_path / "p.onnx"
    code, _, err = cli(
        "prune", cnn, "-o", out, "--sparsity", "0.3", "--structured", "--target", "hw=mars",
        "--cluster", cluster.address,
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and not out.exists()
    assert "no node of the cluster has label hw=mars" in err
    assert all(label in err for label in ("hw=host", "hw=edge", "hw=doomed"))


@needs_ray
def test_no_cluster_at_the_address_fails_in_one_line(cli, cnn, tmp_path, monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh process would be
    code, _, err = cli("bench", cnn, "--target", "hw=edge", "--cluster", "127.0.0.1:1")
    assert code == 1 and err.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:1" in err


RECIPE = """
models = "models"
output = "out"

[cluster]
address = "{address}"
targets = ["{target}"]

[[steps]]
step = "optimize"

[bench]
{bench}
no_memory = true
"""


def write_recipe(folder: Path, address: str, target: str, bench: str, models: int) -> Path:
    (folder / "models").mkdir(parents=True)
    for i in range(models):
        save_model(tiny_cnn(seed=i), folder / "models" / f"m{i}.onnx")
    recipe = folder / "recipe.toml"
    recipe.write_text(RECIPE.format(address=address, target=target, bench=bench))
    return recipe


@needs_ray
def test_recipe_fans_two_models_out_with_one_report(cli, cluster, tmp_path):
    recipe = write_recipe(tmp_path, cluster.address, "hw=edge", "runs = 5", models=2)
    code, _, err = cli("run", recipe)
    assert code == 0, err
    chains = json.loads((tmp_path / "out" / "summary.json").read_text())["chains"]
    assert sorted(chains) == ["m0/hw=edge", "m1/hw=edge"]
    for name, chain in chains.items():
        assert chain["steps"]["90-bench"]["node"] == node_id("hw=edge")  # timing on the target
        bench = tmp_path / "out" / name / "90-bench.json"
        assert json.loads(bench.read_text())["machine"]["node_id"] == node_id("hw=edge")
        assert (tmp_path / "out" / name / "01-optimize.onnx").is_file()
    code, out, err = cli("run", recipe)
    assert code == 0 and out.count("cached") == 2, err


@needs_ray
def test_a_node_dying_mid_step_fails_naming_it_and_the_rerun_resumes(cli, cluster, tmp_path):
    """Last: it kills hw=doomed. The bench step (60 s) dies with its node; the optimize step
    before it stays recorded, so a rerun starts at the bench."""
    recipe = write_recipe(tmp_path, cluster.address, "hw=doomed", "seconds = 60", models=1)
    doomed = node_id("hw=doomed")
    finished: list[tuple[int, str, str]] = []
    thread = threading.Thread(target=lambda: finished.append(cli("run", recipe)))
    thread.start()
    run_file = tmp_path / "out" / "m0" / "hw=doomed" / "run.json"
    deadline = time.monotonic() + 120
    while not (run_file.exists() and "01-optimize" in run_file.read_text()):
        assert time.monotonic() < deadline and thread.is_alive(), finished
        time.sleep(0.5)
    time.sleep(3)  # the bench task is on the node by now
    cluster.kill("doomed")
    thread.join(timeout=120)
    (code, _, err) = finished[0]
    assert code == 1 and err.count("\n") == 1
    assert "90-bench" in err and doomed[:12] in err and "hw=doomed" in err
    assert not (run_file.parent / "90-bench.json").exists()  # nothing half-written
    parsed = parse_recipe(load_recipe(recipe), recipe)
    (chain,) = expand(parsed)
    calls = Planner(chain.recipe, _parsers()).plan()
    log = RunLog(chain.recipe)
    assert log.cached(calls[0]) is not None and log.cached(calls[1]) is None


def _parsers():
    from onnxsmith.cli.verbs import verb_parsers

    return verb_parsers()


def test_chains_expand_models_targets_and_sweeps(tmp_path):
    (tmp_path / "models").mkdir()
    for name in ("a", "b"):
        save_model(tiny_cnn(), tmp_path / "models" / f"{name}.onnx")
    raw = load_recipe(write_recipe(tmp_path / "r", "127.0.0.1:1", "hw=x", "runs = 1", 1))
    raw |= {"models": "../models", "steps": [{"step": "prune", "sweep": {"sparsity": [0.3, 0.5]}}]}
    raw["cluster"]["targets"] = ["hw=x", "hw=y"]
    chains = expand(parse_recipe(raw, tmp_path / "r" / "recipe.toml"))
    assert [c.name for c in chains] == [
        f"{m}/{t}/sparsity={s}" for m in "ab" for t in ("hw=x", "hw=y") for s in (0.3, 0.5)
    ]
    first = chains[0].recipe
    assert first.steps[0].options == {"sparsity": 0.3, "target": "hw=x"}
    assert first.bench is not None and first.bench["target"] == "hw=x"
    assert first.output == tmp_path / "r" / "out" / "a" / "hw=x" / "sparsity=0.3"
    assert first.models == ()


def test_models_folder_runs_serially_without_a_cluster(cli, tmp_path):
    """The same chains as a fan-out, one after another here: the baseline of the benchmark."""
    (tmp_path / "models").mkdir()
    for i in range(2):
        save_model(tiny_cnn(seed=i), tmp_path / "models" / f"m{i}.onnx")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('models = "models"\noutput = "out"\n\n[[steps]]\nstep = "optimize"\n')
    code, out, err = cli("run", recipe)
    assert code == 0, err
    chains = json.loads((tmp_path / "out" / "summary.json").read_text())["chains"]
    assert sorted(chains) == ["m0", "m1"]
    assert all(c["steps"]["01-optimize"]["node"] is None for c in chains.values())
    assert (tmp_path / "out" / "m1" / "01-optimize.onnx").is_file() and "┃ node" not in out
