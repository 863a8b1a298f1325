"""One recipe, many chains: every model × cluster target × sweep value is its own chain.

A chain is the recipe's steps for one model, one target and one choice of swept options, with
its own output folder (`OUTPUT/<model>/<target>/<option=value>`) and run.json, so chains never
share a file and each resumes on its own. A recipe with one model, no targets and no sweep is
the single chain it always was, writing into OUTPUT itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from onnxsmith.errors import UsageError, name_list
from onnxsmith.recipe.spec import Recipe, Step

# Verbs whose results depend on the machine that times them: on a cluster they hold the node's
# one "timing" resource, and with [cluster] targets they are told which target they tune for.
TIMING_VERBS = ("prune", "quantize", "bench")


@dataclasses.dataclass(frozen=True)
class Chain:
    """One model's steps for one target and one sweep choice; `name` is "" for the only one."""

    name: str
    recipe: Recipe
    target: str | None


def expand(recipe: Recipe) -> list[Chain]:
    """Every chain of `recipe`, models first, then targets, then sweep choices."""
    models = recipe.models or (None,)
    targets: tuple[str | None, ...] = (None,)
    if recipe.cluster is not None and recipe.cluster.targets:
        targets = recipe.cluster.targets
    variants = _variants(recipe.steps)
    stems = [m.stem for m in recipe.models]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise UsageError(
            f"run: {recipe.path}: several models are named {name_list(repeated)} — their "
            "output folders would collide; rename them"
        )
    single = len(models) == 1 and targets == (None,) and len(variants) == 1
    chains = []
    for model, target, (label, steps) in itertools.product(models, targets, variants):
        parts = [p for p in (model.stem if model else None, target, label) if p]
        output = recipe.output.joinpath(*map(_folder, parts)) if not single else recipe.output
        chain = dataclasses.replace(
            recipe,
            model=model or recipe.model,
            models=(),
            output=output,
            steps=tuple(_targeted(s.verb, s.options, target, s) for s in steps),
            bench=_with_target(recipe.bench, target),
        )
        chains.append(Chain("/".join(parts), chain, target))
    return chains


def _variants(steps: tuple[Step, ...]) -> list[tuple[str, tuple[Step, ...]]]:
    """(label, steps) per combination of the steps' swept values; ("", steps) without sweeps."""
    axes = [(i, key, values) for i, step in enumerate(steps) for key, values in step.sweep.items()]
    if not axes:
        return [("", steps)]
    variants = []
    for choice in itertools.product(*(values for _, _, values in axes)):
        chosen = [list(s.options.items()) for s in steps]
        for (i, key, _), value in zip(axes, choice, strict=True):
            chosen[i].append((key, value))
        label = ",".join(f"{key}={value}" for (_, key, _), value in zip(axes, choice, strict=True))
        variants.append(
            (
                label,
                tuple(
                    dataclasses.replace(step, options=dict(options), sweep={})
                    for step, options in zip(steps, chosen, strict=True)
                ),
            )
        )
    return variants


def _targeted(verb: str, options: dict[str, Any], target: str | None, step: Step) -> Step:
    if target is None or verb not in TIMING_VERBS:
        return step
    return dataclasses.replace(step, options={**options, "target": target})


def _with_target(bench: dict[str, Any] | None, target: str | None) -> dict[str, Any] | None:
    if bench is None or target is None:
        return bench
    return {**bench, "target": target}


def _folder(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in part)
