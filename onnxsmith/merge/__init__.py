"""Merging N models into one graph: parallel ensembles, chains, cascades and stacks."""

from onnxsmith.merge.cascade import set_threshold
from onnxsmith.merge.ensemble import MODES, merge_models, merge_record
from onnxsmith.merge.fit import StackFit
from onnxsmith.merge.interface import Rename, parse_mapping

__all__ = [
    "MODES",
    "Rename",
    "StackFit",
    "merge_models",
    "merge_record",
    "parse_mapping",
    "set_threshold",
]
