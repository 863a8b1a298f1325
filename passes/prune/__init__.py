"""Pruning passes: magnitude (unstructured) and channel (structured) pruning, plus planning."""

from onnxsmith.passes.prune.channels import PruneChannelsPass
from onnxsmith.passes.prune.groups import ChannelAnalysis, ChannelGroup, analyze_channels
from onnxsmith.passes.prune.magnitude import CRITERIA, SCOPES, PruneMagnitudePass
from onnxsmith.passes.prune.plan import (
    ChannelPlan,
    GroupCost,
    GroupDecision,
    Sensitivity,
    plan_channels,
    unit_scores,
)

from onnxsmith.calibration import InputStats
from onnxsmith.linear import PRUNABLE_OPS

__all__ = [
    "CRITERIA",
    "PRUNABLE_OPS",
    "SCOPES",
    "ChannelAnalysis",
    "ChannelGroup",
    "ChannelPlan",
    "GroupCost",
    "GroupDecision",
    "InputStats",
    "PruneChannelsPass",
    "PruneMagnitudePass",
    "Sensitivity",
    "analyze_channels",
    "plan_channels",
    "unit_scores",
]
