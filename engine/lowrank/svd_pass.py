"""What ``lowrank.svd`` does to a model file: find the linear layers, choose their ranks,
factorize them, report.

ONNX graphs are rewritten on the graph (``onnx_svd``), so any exported architecture works;
Hugging Face checkpoints are factorized in PyTorch (``linear_svd``), from their inputs'
statistics when the job has data, and saved with their structure recorded in config.json
(``structure``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.lowrank import ranks as rank_rules
from engine.lowrank.options import RankRule, Target
from engine.model import ModelFile

# Ranks per layer name for the layers' spectra; None keeps a layer dense.
ChooseRanks = Callable[[list[rank_rules.Spectrum]], dict[str, int | None]]


def factorize_model(
    model: ModelFile,
    ctx: PassContext,
    *,
    rank_rule: RankRule,
    param_ratio: float,
    energy: float,
    target: Target,
    exclude: list[str],
    min_features: int,
    data_aware: bool,
    calibration_rows: int,
    max_length: int,
) -> ModelFile:
    """Factorize ``model``'s linear layers into a copy in the work folder; reports into ``ctx``."""

    def choose(spectra: list[rank_rules.Spectrum]) -> dict[str, int | None]:
        from engine.lowrank.linear_svd import choose_ranks

        if not spectra:
            raise PassNotApplicable(
                "no linear layer to factorize (check target, exclude and min_features)",
                detail={"target": target, "min_features": min_features},
            )
        return choose_ranks(spectra, rank_rule, param_ratio=param_ratio, energy=energy)

    if model.format == "onnx":
        layers, dest = _onnx(
            model, ctx, choose, target=target, exclude=exclude, min_features=min_features
        )
    else:
        layers, dest = _torch(
            model,
            ctx,
            choose,
            target=target,
            exclude=exclude,
            min_features=min_features,
            calibration=(calibration_rows, max_length) if data_aware else None,
        )
    dense = sum(layer["dense_params"] for layer in layers)
    kept = sum(layer["params"] for layer in layers)
    summary = {
        "rank_rule": rank_rule,
        "layers_factorized": len(layers),
        "dense_params": dense,
        "factorized_params": kept,
        "param_ratio": round(kept / dense, 4) if dense else None,
    }
    ctx.resolved.update(summary | {"ranks": {layer["layer"]: layer["rank"] for layer in layers}})
    ctx.add_report_section("lowrank_svd", summary | {"layers": layers})
    return dest


def _onnx(
    model: ModelFile,
    ctx: PassContext,
    choose: ChooseRanks,
    *,
    target: Target,
    exclude: list[str],
    min_features: int,
) -> tuple[list[dict[str, Any]], ModelFile]:
    from engine.formats import onnx_model
    from engine.lowrank import onnx_svd

    proto = onnx_model.load_proto(model.path)
    uses = onnx_svd.weight_uses(proto, target=target, exclude=exclude, min_features=min_features)
    spectra = [onnx_svd.spectrum(u) for u in uses]
    chosen = choose(spectra)
    layers = onnx_svd.factorize(proto, uses, chosen)
    errors = {}
    for use, s in zip(uses, spectra, strict=True):
        rank = chosen.get(s.name)
        if rank:
            errors[use.node.name or use.name] = rank_rules.relative_error(s.singular_values, rank)
    for layer in layers:
        layer["relative_error"] = round(errors.get(layer["layer"], 0.0), 5)
    dest = ctx.work_dir / "model.onnx"
    onnx_model.save_proto(proto, dest)
    return layers, model.with_path(dest)


def _torch(
    model: ModelFile,
    ctx: PassContext,
    choose: ChooseRanks,
    *,
    target: Target,
    exclude: list[str],
    min_features: int,
    calibration: tuple[int, int] | None,
) -> tuple[list[dict[str, Any]], ModelFile]:
    """``calibration``: (rows, tokens per row) of the job's data for data-aware factors, if any."""
    from engine.formats.torch_model import load_torch, save_torch
    from engine.lowrank import linear_svd

    tm = load_torch(model)
    found = linear_svd.linear_layers(
        tm.module, target=target, exclude=exclude, min_features=min_features
    )
    whitening = None
    if calibration is not None and ctx.dataset is not None and found:
        rows, max_length = calibration
        whitening = linear_svd.input_whitening(
            tm, ctx.dataset, [n for n, _ in found], rows=rows, max_length=max_length
        )
    ctx.resolved["data_aware"] = whitening is not None
    spectra = [
        linear_svd.spectrum(name, layer.weight, (whitening or {}).get(name))
        for name, layer in found
    ]
    chosen = choose(spectra)
    layers = linear_svd.factorize_linears(tm.module, chosen, whitening)
    errors = {
        s.name: rank_rules.relative_error(s.singular_values, chosen[s.name] or 0) for s in spectra
    }
    for layer in layers:
        layer["relative_error"] = round(errors[layer["layer"]], 5)
    return layers, save_torch(tm, ctx.work_dir)
