"""Task-true fidelity with no labels: a transformed model judged against the original's outputs.

Pure numpy: no ONNX Runtime runs here (`runtime.metric.EvalSet` and the verbs run the models and
hand the outputs over); it sits in `runtime/` so that every verb and `bench` can import it.

- `plan_metrics(names, reference_outputs, metric="auto")` chooses a metric per output from the
  reference's outputs (`choose.py` has the rules) and returns a `MetricPlan`;
- `MetricPlan.score(reference_outputs, outputs)` returns a `Score`: a `Fidelity` per output
  (value, loss, tolerance, met);
- `METRICS` holds the built-ins (top1, ctc, mask_iou, detection_f1, embedding, cosine, snr,
  mse, exact), each callable as `metric(reference, outputs, tolerance=None) -> Fidelity`;
- `load_plugin("file.py:fn", step)` loads the user's `fn(reference_outputs, outputs) -> [0, 1]`.
"""

from onnxsmith.runtime.fidelity.choose import Choice, choose_metric
from onnxsmith.runtime.fidelity.plan import (
    ALL_OUTPUTS,
    AUTO,
    MetricPlan,
    metric_names,
    plan_metrics,
)
from onnxsmith.runtime.fidelity.plugin import PluginMetric, is_plugin, load_plugin
from onnxsmith.runtime.fidelity.registry import METRICS, TaskMetric
from onnxsmith.runtime.fidelity.result import Fidelity, Score

__all__ = [
    "ALL_OUTPUTS",
    "AUTO",
    "METRICS",
    "Choice",
    "Fidelity",
    "MetricPlan",
    "PluginMetric",
    "Score",
    "TaskMetric",
    "choose_metric",
    "is_plugin",
    "load_plugin",
    "metric_names",
    "plan_metrics",
]
