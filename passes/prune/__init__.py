"""Pruning passes: magnitude (unstructured) and channel (structured) pruning, plus planning."""

from onnxsmith.passes.prune.channels import PruneChannelsPass
from onnxsmith.passes.prune.groups import ChannelAnalysis, ChannelGroup, analyze_channels
from onnxsmith.passes.prune.linear import PRUNABLE_OPS
from onnxsmith.passes.prune.magnitude import CRITERIA, SCOPES, PruneMagnitudePass
from onnxsmith.passes.prune.plan import ChannelPlan, GroupDecision, plan_channels, unit_scores
from onnxsmith.passes.prune.refit import InputStats

__all__ = [
    "CRITERIA",
    "PRUNABLE_OPS",
    "SCOPES",
    "ChannelAnalysis",
    "ChannelGroup",
    "ChannelPlan",
    "GroupDecision",
    "InputStats",
    "PruneChannelsPass",
    "PruneMagnitudePass",
    "analyze_channels",
    "plan_channels",
    "unit_scores",
]
