"""Runs a set of onnxscript rewrite rules on every graph of a model, subgraphs included."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import RewriteRule, RewriteRuleSet


def apply_rules(model: ir.Model, rules: Sequence[RewriteRule]) -> int:
    """Applies `rules` until none matches; returns how many rewrites happened."""
    return RewriteRuleSet(list(rules)).apply_to_model(model)
