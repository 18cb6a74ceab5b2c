"""The search space: a candidate is a plan (a few named choices), turned into a recipe of
registered passes in a valid order: a structure-changing step first (pruning, low-rank or
distillation into a smaller student), then recovery training, quantization last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from engine.search.goal import Goal
from engine.training.config import DEFAULT_LR

Plan = dict[str, Any]

# Recovery training per round. An epoch of a small CNN takes a fraction of a second and a pruned
# one recovers only after a dozen or more (digits CNN at 8/16/16 channels: test accuracy 0.82-0.88
# after 6 epochs, 0.94 after 20, the original 0.90); an epoch of MiniLM-L6 on 240 sentences about 4 s
# (Intel Xeon, 2 cores). Uniform like the former 1-6, so that searches saved with it resume
# (Optuna refuses another log setting for a parameter); the budget's deadline stops a candidate
# that would run past it.
MAX_EPOCHS = 24
# The recovery's peak learning rate, as a multiple of the training loop's default for the model's
# kind (engine.training.DEFAULT_LR). The default suits a light fine-tune; a CNN pruned to a
# quarter of its channels recovers far better at three times it (digits CNN at 8/16/16 channels,
# 3 rounds of 16 epochs: held-out accuracy 0.89 at 1e-3, 0.95 at 3e-3, the original 0.93).
LR_SCALES = (1.0, 3.0)
# A transformer student with layers removed starts far from its teacher (cosine 0.53 on MiniLM-L6
# at 3 of 6 layers, 0.70 at 4), not near it as a lightly fine-tuned model does: its peak rate is
# ten times the fine-tuning default, and it also matches the teacher's hidden states at the layers
# it kept (MiniLM-L6, 3 layers, 30,000 sentences, 3 epochs at 5e-4 with hidden_weight 1: cosine
# 0.959 on held-out sentences; bench.distill_lowrank, docs/benchmarks.md). Three times it did worse
# (10,800 sentences, 3 epochs: the job's cosine 0.928 at 1.5e-3, 0.932 at 5e-4; AMD EPYC, AVX2,
# 2026-12-01).
STUDENT_LR_HF = 5e-4
STUDENT_HIDDEN_WEIGHT = 1.0
# The first student keeps two thirds of a transformer's blocks. MiniLM-L6 on an AMD EPYC with
# AVX-512 VNNI (2 cores, 2026-12-01), 10,800 sentences, 2 epochs, then int8, judged on 500 others:
# 4 of 6 blocks 3.59x fp32 at cosine 0.951 per token (0.959 pooled); 3 of 6 stayed at 0.93.
STUDENT_SHARE_HF = 2 / 3


@dataclass(frozen=True)
class ModelTraits:
    format: str  # "onnx" or "hf"
    has_dataset: bool
    has_labels: bool
    convolutional: bool = False  # low-rank then factorizes convolutions (Tucker-2), not linear layers
    layers: int | None = None  # a transformer's blocks (num_hidden_layers): its students keep fewer


def applicable_methods(traits: ModelTraits) -> list[str]:
    """Ops the search can use on this model: distillation trains, so it needs rows."""
    methods = ["quantize", "prune", "lowrank"]
    if traits.has_dataset:
        methods.append("distill")
    return methods


def search_capabilities() -> dict[str, Any]:
    """What the API checks a goal against before it queues the job."""
    return {
        "methods": {fmt: applicable_methods(ModelTraits(format=fmt, has_dataset=True, has_labels=True)) for fmt in ("onnx", "hf")},
        "needs_dataset": sorted(set(applicable_methods(ModelTraits("onnx", True, True))) - set(applicable_methods(ModelTraits("onnx", False, False)))),
    }


def structures(goal: Goal, traits: ModelTraits) -> list[str]:
    none = ["none"] if "quantize" in goal.methods else []
    # A transformer's student drops blocks: one with a single block has none to drop.
    student = traits.format != "hf" or (traits.layers or 0) >= 2
    return [*none, *[m for m in ("prune", "lowrank", "distill")
                     if m in goal.methods and m in applicable_methods(traits) and (m != "distill" or student)]]


def quantizers(goal: Goal, traits: ModelTraits) -> list[str]:
    if "quantize" not in goal.methods:
        return ["none"]
    if goal.methods == ("quantize",):
        # Alone, quantization is the whole search: its variants are the space.
        return ["auto", "dynamic", "static"] if traits.format == "onnx" else ["auto"]
    return ["none", "auto"]


def suggest(trial: optuna.Trial, goal: Goal, traits: ModelTraits) -> Plan:
    """Define-by-run: a choice's options are asked only where the choice is taken."""
    plan: Plan = {"structure": trial.suggest_categorical("structure", structures(goal, traits))}
    if plan["structure"] == "prune":
        plan["prune_ratio"] = trial.suggest_float("prune_ratio", 0.1, 0.9, step=0.05)
        if traits.has_dataset:  # high ratios keep more quality pruned in rounds, trained after each
            plan["prune_steps"] = trial.suggest_int("prune_steps", 1, 3)
        if traits.format == "hf":  # a transformer also loses whole attention heads
            plan["head_ratio"] = trial.suggest_float("head_ratio", 0.0, 0.5, step=0.125)
    elif plan["structure"] == "lowrank":
        plan["lowrank_ratio"] = trial.suggest_float("lowrank_ratio", 0.2, 0.9, step=0.05)
    elif plan["structure"] == "distill":
        if traits.format == "hf":
            plan["layers"] = trial.suggest_int("layers", 1, int(traits.layers or 2) - 1)
        else:
            plan["width"] = trial.suggest_float("width", 0.15, 0.75, step=0.05)
    if plan["structure"] != "none" and traits.has_dataset:
        plan["epochs"] = trial.suggest_int("epochs", 1, MAX_EPOCHS)
        plan["lr_scale"] = trial.suggest_categorical("lr_scale", LR_SCALES)
    if plan["structure"] == "none":
        # The original unchanged is the baseline, not a candidate.
        plan["quantize"] = trial.suggest_categorical("quantize_only", [q for q in quantizers(goal, traits) if q != "none"])
    else:
        plan["quantize"] = trial.suggest_categorical("quantize", quantizers(goal, traits))
    return plan


def one_shots(goal: Goal, traits: ModelTraits) -> list[Plan]:
    """Cheap first: one candidate per family with middle-of-the-road options, before the sampler
    spends the budget where these point."""
    shapes = structures(goal, traits)
    quant = quantizers(goal, traits)
    trained = traits.has_dataset
    plans: list[Plan] = []
    if "auto" in quant:
        plans.append({"structure": "none", "quantize": "auto"})
    for q in quant:
        if q not in ("none", "auto") and "none" in shapes:
            plans.append({"structure": "none", "quantize": q})
    fallback = "none" if "none" in quant else quant[0]
    # Every choice a plan's family asks, fixed: a one-shot is one plan, the same on every attempt.
    prune_extra = {**({"head_ratio": 0.0} if traits.format == "hf" else {}), **({"prune_steps": 1} if trained else {})}

    def training(epochs: int) -> Plan:
        return {"epochs": epochs, "lr_scale": 1.0} if trained else {}

    # The student first: it removes the most compute at once (a third of the blocks, or half the
    # width), and was the fastest structure within the quality on both reference models (digits
    # CNN at x0.5 width 3.6x at the teacher's accuracy; MiniLM-L6 at 4 of 6 blocks with int8 3.6x
    # at cosine 0.95).
    trained_shots: list[Plan] = []
    if "distill" in shapes:
        if traits.format == "hf":  # structures() left the student out where there are no blocks to drop
            blocks = int(traits.layers or 2)
            student: Plan = {"layers": max(1, min(blocks - 1, round(STUDENT_SHARE_HF * blocks)))}
        else:
            student = {"width": 0.5}
        trained_shots.append({"structure": "distill", **student, **training(3)})
    if "prune" in shapes:
        trained_shots.append({"structure": "prune", "prune_ratio": 0.3, **prune_extra, **training(2)})
    if "lowrank" in shapes:
        trained_shots.append({"structure": "lowrank", "lowrank_ratio": 0.5, **training(2)})
    for shot in trained_shots:
        plans.append({**shot, "quantize": fallback})
        if fallback != "auto" and "auto" in quant:
            # Its quantized twin starts from the same trained model (evaluate.Trained): seconds.
            plans.append({**shot, "quantize": "auto"})
    if "prune" in shapes and "auto" in quant:
        plans.append({"structure": "prune", "prune_ratio": 0.5, **prune_extra, **training(3), "quantize": "auto"})
    return plans


def params_of(plan: Plan) -> dict[str, Any]:
    """The sampler's parameters that ``suggest`` turns into ``plan`` (to enqueue a plan)."""
    if plan["structure"] == "none":
        return {"structure": "none", "quantize_only": plan["quantize"]}
    return dict(plan)


def plan_key(plan: Plan) -> str:
    return ",".join(f"{k}={plan[k]}" for k in sorted(plan))


def recipe_of(plan: Plan, goal: Goal, traits: ModelTraits) -> list[dict[str, Any]]:
    """The recipe a plan stands for: what the user could resubmit as a recipe job."""
    objective = "labels" if goal.metric in ("accuracy", "f1", "mse") else "distill"
    epochs = int(plan.get("epochs", 0))
    scale = float(plan.get("lr_scale", 1.0))
    lr = {"lr": round(DEFAULT_LR["hf" if traits.format == "hf" else "fx"] * scale, 8)} if scale != 1.0 else {}
    steps: list[dict[str, Any]] = []
    structure = plan["structure"]
    if structure == "prune":
        steps.append({"op": "prune", "method": "structured", "ratio": plan["prune_ratio"], "finetune_epochs": epochs, **lr,
                      **({"steps": plan["prune_steps"]} if plan.get("prune_steps", 1) > 1 else {}),
                      **({"head_ratio": plan["head_ratio"]} if plan.get("head_ratio") else {})})
    elif structure == "lowrank":
        if traits.convolutional:
            steps.append({"op": "lowrank", "method": "tucker", "rank_rule": "ratio", "rank_ratio": plan["lowrank_ratio"]})
        else:
            steps.append({"op": "lowrank", "method": "svd", "param_ratio": plan["lowrank_ratio"]})
        if epochs:
            steps.append({"op": "finetune", "method": "train", "epochs": epochs, "objective": objective, **lr})
    elif structure == "distill":
        student: dict[str, Any] = (
            {"student": "fewer_layers", "layers": plan["layers"], "hidden_weight": STUDENT_HIDDEN_WEIGHT,
             "lr": round(STUDENT_LR_HF * scale, 8)} if "layers" in plan
            else {"student": "width", "width_multiplier": plan["width"], **lr}
        )
        steps.append({"op": "distill", "method": "kd", "epochs": epochs or 3, **student})
    quantize = plan["quantize"]
    if quantize == "auto":
        step: dict[str, Any] = {"op": "quantize", "method": "auto"}
        if goal.metric == "cosine":
            # The search judges quality itself: let the default quantize as far as the bound allows.
            step["target_cosine"] = round(max(0.9, 1.0 - goal.max_drop), 4)
        if traits.convolutional and goal.objective == "latency":
            # int8 against float is decided where the goal is judged, on enough rows to fill a batch.
            step["timing_batch_sizes"] = [goal.batch_size]
            step["calibration_rows"] = max(32, min(goal.batch_size, 512))
        steps.append(step)
    elif quantize == "dynamic":
        steps.append({"op": "quantize", "method": "dynamic", "per_channel": True})
    elif quantize == "static":
        steps.append({"op": "quantize", "method": "static", "per_channel": True})
    return steps
