"""Structured pruning: whole conv filters/channels, linear neurons, attention heads and FFN neurons.

torch-pruning's dependency graph removes each pruned channel from every coupled layer, so the
result is a physically smaller dense model (fewer parameters, fewer MACs) that needs no masks and
no sparse kernels: the one pruning method that makes inference faster on any runtime. Works on
HF checkpoints (BERT-style encoders: heads and FFN neurons) and on ONNX graphs converted to
PyTorch (onnx2torch) and exported back to ONNX.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.recovery import RecoveryOptions
from engine.pruning.torch_pass import TorchPrunePass

# With a MACs target, torch-pruning moves towards ``ratio`` in this many equal increments and
# stops at the first that reaches the target: the resolution of MACs targets (2% of ratio).
MACS_INCREMENTS = 50


# Measured on this machine's AVX2 CPU, digits CNN at half the MACs, onnxruntime, batch 256:
# channels 22/44/44 (no rounding) ran 0.63x the original's speed; rounded to multiples of 8,
# 1.5x faster. Hence round_to defaults to 8.


class StructuredPruneConfig(RecoveryOptions):
    ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description=(
            "fraction of the channels/neurons removed from each prunable layer (transformers: of the FFN "
            "neurons); with macs_ratio, the most that may be removed"
        ),
    )
    macs_ratio: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="prune until the MACs are at most this fraction of the original's (e.g. 0.5 halves the compute)",
    )
    head_ratio: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "transformers: fraction of the attention heads removed from each layer (whole heads). The result "
            "loads through Shrink and exports to ONNX; stock transformers 5 cannot express removed heads"
        ),
    )
    importance: Literal["l2", "l1", "taylor"] = Field(
        "l2",
        description="how channels are ranked: L2 or L1 norm of their weights, or first-order Taylor (needs labelled data)",
    )
    global_pruning: bool = Field(
        False,
        description="rank channels across layers instead of within each layer (ONNX-origin graphs only)",
    )
    round_to: int | None = Field(
        8,
        ge=1,
        le=256,
        description=(
            "keep channel counts multiples of this; onnxruntime's blocked convolution kernels need multiples "
            "of 8 (AVX2) or 16 (AVX-512), and odd widths ran slower than the unpruned model. null: exact ratios"
        ),
    )


class StructuredPrune(TorchPrunePass[StructuredPruneConfig]):
    op = "prune"
    method = "structured"
    summary = "remove whole channels, neurons and attention heads (torch-pruning): fewer MACs, really faster"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    # The only pruning that speeds up dense kernels on every runtime; unstructured zeros only
    # shrink compressed storage.
    default_for_op = True

    def check(self, model: ModelFile, ctx: PassContext) -> None:
        super().check(model, ctx)
        cfg = self.config
        if cfg.global_pruning and model.format == "hf":
            from engine.errors import ConfigInvalid

            raise ConfigInvalid(
                "global_pruning applies to ONNX-origin graphs; transformers are pruned per layer, "
                "since a transformers config states one FFN width for all layers"
            )
        if cfg.importance == "taylor":
            from engine.pruning.structured import taylor_rows

            taylor_rows(ctx.dataset, cfg.validation_fraction, ctx.seed)

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.bench.sizes import parameter_counts, size_on_disk
        from engine.formats.torch_model import load_torch, save_torch
        from engine.pruning import measure, structured
        from engine.pruning.recovery import prune_in_rounds
        from engine.pruning.schedule import linear_fractions

        cfg = self.config
        tm = load_torch(model).trainable()
        tm.module.to(ctx.device)
        before = measure.module_summary(tm)
        # A plain ratio needs one torch-pruning step per round (each step ranks every group: seconds
        # on a transformer); a MACs target needs fine increments to stop close to it.
        increments = MACS_INCREMENTS if cfg.macs_ratio is not None else cfg.steps
        pruner = structured.build_pruner(
            tm,
            ratio=cfg.ratio,
            head_ratio=cfg.head_ratio,
            importance=cfg.importance,
            global_pruning=cfg.global_pruning,
            round_to=cfg.round_to,
            iterative_steps=increments,
        )
        taylor_data = (
            structured.taylor_rows(ctx.dataset, cfg.validation_fraction, ctx.seed)
            if cfg.importance == "taylor"
            else None
        )
        fractions = linear_fractions(cfg.steps)

        def one_increment() -> None:
            if taylor_data is not None:
                from engine.training import torch_batches

                structured.accumulate_taylor_gradients(
                    tm,
                    lambda: torch_batches(
                        taylor_data,
                        tm,
                        cfg.batch_size,
                        shuffle=True,
                        seed=ctx.seed,
                        max_length=cfg.max_length,
                        device=ctx.device,
                    ),
                )
            pruner.step()
            if taylor_data is not None:
                tm.module.zero_grad(set_to_none=True)

        def prune_round(index: int) -> dict[str, Any]:
            # Each round goes an equal share of the way: of the ratio (one torch-pruning step), or of
            # the MACs to remove (as many increments as that takes).
            if cfg.macs_ratio is None:
                one_increment()
            else:
                goal_macs = before["macs"] * (1 - (1 - cfg.macs_ratio) * fractions[index])
                while pruner.current_step < increments and measure.count_macs(tm) > goal_macs:
                    ctx.check_cancel()
                    one_increment()
            macs = measure.count_macs(tm)
            shapes = structured.sync_attention_config(tm) if tm.kind == "hf" else {}
            return {
                "ratio": round(cfg.ratio * pruner.current_step / increments, 4),
                "head_ratio": round(cfg.head_ratio * pruner.current_step / increments, 4),
                "macs": macs,
                "params": measure.parameter_count(tm.module),
                **shapes,
            }

        rounds = prune_in_rounds(tm, ctx, cfg, prune_round, name="prune")
        if tm.kind == "hf":
            shapes = structured.sync_attention_config(tm)
        after = measure.module_summary(tm)
        tm.module.to("cpu")
        out = save_torch(tm, ctx.work_dir)
        sizes = size_on_disk(out)
        report: dict[str, Any] = {
            "method": "structured",
            "importance": cfg.importance,
            "params_before": before["params"],
            "params": after["params"],
            "macs_before": before["macs"],
            "macs": after["macs"],
            "macs_ratio": after["macs"] / before["macs"] if before["macs"] else None,
            "params_ratio": after["params"] / before["params"] if before["params"] else None,
            "nonzero_params": parameter_counts(out)["nonzero_params"],
            "size_bytes": sizes["size_bytes"],
            "compressed_size_bytes": sizes["compressed_size_bytes"],
            **rounds,
        }
        if "macs_sequence_length" in after:
            report["macs_sequence_length"] = after["macs_sequence_length"]
        if tm.kind == "hf":
            report.update(shapes)
        if (
            cfg.macs_ratio is not None
            and after["macs"] > before["macs"] * cfg.macs_ratio * 1.001
            and not rounds["stopped_early"]
        ):
            report["note"] = (
                f"MACs target not reached: ratio {cfg.ratio} is the most each layer may lose"
            )
        ctx.add_report_section("prune", report)
        ctx.resolved.update(
            {
                "macs_ratio_achieved": round(report["macs_ratio"] or 1.0, 4),
                "params": after["params"],
            }
        )
        return out
