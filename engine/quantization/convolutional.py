"""The default quantization on a convolutional graph: static int8 where it pays, timed against
the float model, and the faster of the two that keeps quality delivered.

Why not the transformer recipe: onnxruntime's dynamic quantization turns each Conv into
``ConvInteger``, which quantizes its input at run time and has no fast CPU kernel; on the digits
CNN that made the model several times slower than float at every batch size. Static int8 (QDQ,
activation ranges calibrated ahead of time) becomes ``QLinearConv`` at session load, which is
the fast int8 convolution. Whether it beats float still depends on the model, the batch size and
the CPU's int8 instructions, so it is measured, not assumed:

1. the float model with onnxruntime's offline graph optimizations (``variants.optimized_float``);
2. static int8 QDQ, per-channel weights, activations calibrated on the job's dataset or, without
   one, on inputs generated from the signature (``onnx_quant.evaluation_feeds``), ``reduce_range``
   as everywhere else. Only weights that make a real matrix are quantized (``int8_layers``);
3. the original, the optimized float and the int8 model timed interleaved with the benchmark's
   timer at batch size 1 and the feeds' own; fidelity to the original measured on the same rows.

The int8 model is delivered when it keeps quality, is measurably faster than the optimized float
model at some timed batch size and measurably slower than neither float model at any; otherwise
the optimized float model if it measured faster than the original, else the original itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine import hardware
from engine.context import PassContext
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import onnx_quant, static, variants

# Operators quantized statically here: a CNN's convolutions and fully connected layers. MatMul
# is left out: where it carries the compute (attention), per-tensor static activation ranges
# cannot follow the outlier channels, and the transformer recipe does better.
INT8_OPS = ("Conv", "Gemm")
# A weight read as a matrix (outputs x dot-product length) must be at least this wide both ways
# for int8 to pay: a thin one (the first convolution of a one-channel image, 9 terms per output;
# a 10-class head) spends more on quantizing its input and output than its int8 product saves.
# On the digits CNN, quantizing the first convolution too left int8 no faster than float at batch 1.
MIN_INT8_SIDE = 32
# A classifier's top label must agree with the original's on this share of the rows.
MIN_TOP1_AGREEMENT = 0.99


def conv_layers(proto: Any) -> list[str]:
    """Names of the Conv nodes with a constant weight: those dynamic int8 would make ConvInteger."""
    initializers = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in initializers]


def is_convolutional(proto: Any) -> bool:
    return bool(conv_layers(proto))


def _matrix_sides(dims: list[int], op_type: str) -> tuple[int, int]:
    """(outputs, dot-product length) of a weight: Conv [M, C/group, k...]; Gemm/MatMul 2-D."""
    if op_type == "Conv":
        return dims[0], int(np.prod(dims[1:]))
    return (dims[0], dims[1]) if len(dims) == 2 else (0, 0)


def int8_layers(proto: Any) -> tuple[list[str], list[str]]:
    """(quantized, kept float): the ``INT8_OPS`` nodes with a constant weight, split by
    ``MIN_INT8_SIDE``."""
    dims = {t.name: list(t.dims) for t in proto.graph.initializer}
    quantized: list[str] = []
    kept: list[str] = []
    for node in proto.graph.node:
        if node.op_type not in INT8_OPS or len(node.input) < 2 or node.input[1] not in dims:
            continue
        sides = _matrix_sides(dims[node.input[1]], node.op_type)
        (quantized if min(sides) >= MIN_INT8_SIDE else kept).append(node.name)
    return quantized, kept


def keeps_quality(fidelity: dict[str, Any], target_cosine: float) -> bool:
    if fidelity.get("cosine_mean") is None or fidelity["cosine_mean"] < target_cosine:
        return False
    return fidelity.get("top1_agreement", 1.0) >= MIN_TOP1_AGREEMENT


def _quantize_static(
    model: ModelFile, ctx: PassContext, feeds: list[dict[str, np.ndarray]], reduce_range: bool
) -> tuple[Path | None, list[str], list[str]]:
    """Static int8 QDQ of ``model`` calibrated on ``feeds``: (path, quantized, kept float); no
    path when no layer is worth int8."""
    with onnx_quant.preprocessed(model.path, ctx.work_dir) as src:
        quantized, kept = int8_layers(onnx_model.load_proto(src, with_data=False))
        if not quantized:
            return None, quantized, kept
        dest = static.quantize(
            src,
            ctx.work_dir / "int8.onnx",
            onnx_quant.FeedsCalibrationReader(feeds),
            calibration_method="minmax",
            percentile=99.999,
            per_channel=True,
            activation="uint8",
            weight="int8",
            reduce_range=reduce_range,
            op_types=list(INT8_OPS),
            nodes_to_exclude=kept,
        )
    return dest, quantized, kept


def _not_slower(speedups: dict[str, dict[str, Any]]) -> bool:
    return all(s["verdict"] != "slower" for s in speedups.values())


def _ratios(speedups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {bs: {"value": s["value"], "ci95": s["ci95"], "verdict": s["verdict"]} for bs, s in speedups.items()}


def quantize(
    model: ModelFile, ctx: PassContext, feeds: list[dict[str, np.ndarray]], *, target_cosine: float, reduce_range: bool,
    timing_batch_sizes: list[int] | None = None,
) -> ModelFile:
    """The fastest of int8, optimized float and the original that keeps quality (module
    docstring); what was measured and why the choice goes into ``ctx.resolved`` and the report's
    ``default_quantization`` section."""
    from engine.bench.config import BenchmarkConfig
    from engine.bench.runners import feeds_from_dataset

    inputs, _ = onnx_model.signature(onnx_model.load_proto(model.path, with_data=False))
    calibration = "the job's dataset" if feeds_from_dataset(inputs, ctx.dataset) else "inputs generated from the signature"
    rows = onnx_quant.FeedsCalibrationReader(feeds).rows

    ctx.progress(0.1, f"static int8: calibrating on {rows} rows of {calibration}")
    int8, quantized, kept = _quantize_static(model, ctx, feeds, reduce_range)
    ctx.check_cancel()
    ctx.progress(0.4, "optimizing the float graph")
    paths: dict[str, Path] = {"original": model.path}
    optimized = variants.optimized_float(model.path, ctx.work_dir / "float.onnx")
    if optimized is not None:
        paths["optimized_float"] = optimized
    if int8 is not None:
        paths["int8"] = int8

    ctx.progress(0.5, "checking fidelity")
    reference = onnx_quant.run_outputs(model.path, feeds)
    fidelity = {
        name: onnx_quant.fidelity(reference, onnx_quant.run_outputs(path, feeds), feeds)
        for name, path in paths.items()
        if name != "original"
    }
    ctx.check_cancel()
    ctx.progress(0.6, "timing int8 against float")
    # The benchmark's own allowance for two sessions of one model running apart.
    session_noise = BenchmarkConfig().session_noise
    timings = variants.time_variants(paths, feeds, batch_sizes=timing_batch_sizes)
    vs_original = {name: timings.speedup("original", name, session_noise=session_noise) for name in paths if name != "original"}
    int8_vs_float = (
        timings.speedup("optimized_float", "int8", session_noise=session_noise)
        if "int8" in paths and "optimized_float" in paths
        else None
    )

    chosen, reason = choose(paths, fidelity, vs_original, int8_vs_float, target_cosine)
    delivered = model.path
    for name in ("int8", "optimized_float"):
        if name in paths and name == chosen:
            delivered = paths[name].replace(ctx.work_dir / "model.onnx")
        elif name in paths:
            paths[name].unlink()

    section = {
        "chosen": chosen,
        "reason": reason,
        "target_cosine": target_cosine,
        "min_top1_agreement": MIN_TOP1_AGREEMENT,
        "variants": [
            {
                "name": name,
                "fidelity": fidelity.get(name),
                "speedup_vs_original": _ratios(vs_original[name]) if name in vs_original else None,
            }
            for name in paths
        ],
    }
    if int8_vs_float is not None:
        section["int8_speedup_vs_optimized_float"] = _ratios(int8_vs_float)
    ctx.add_report_section("default_quantization", section)
    chosen_fidelity = fidelity.get(chosen, {"cosine_mean": 1.0, "cosine_min": 1.0})
    recipe = {
        "int8": "static int8 QDQ per-channel" + (", 7-bit weights" if reduce_range else "") + f", calibrated on {calibration}",
        "optimized_float": "float, onnxruntime offline graph optimizations (no int8 variant kept quality and ran faster)",
        "original": "the original, unchanged (no variant kept quality and ran faster)",
    }[chosen]
    ctx.resolved.update(
        recipe=recipe,
        variant=chosen,
        reason=reason,
        cpu=hardware.cpu_info(),
        calibration=calibration,
        calibration_rows=rows,
        int8_layers=quantized,
        kept_float=kept if chosen == "int8" else [],
        speedup_vs_original={name: _ratios(s) for name, s in vs_original.items()},
        measured_cosine_mean=chosen_fidelity["cosine_mean"],
        measured_cosine_min=chosen_fidelity["cosine_min"],
        met_target=chosen_fidelity["cosine_mean"] >= target_cosine,
    )
    if int8_vs_float is not None:
        ctx.resolved["int8_speedup_vs_optimized_float"] = _ratios(int8_vs_float)
    if "top1_agreement" in chosen_fidelity:
        ctx.resolved["top1_agreement"] = chosen_fidelity["top1_agreement"]
    return model.with_path(delivered)


def choose(
    paths: dict[str, Path],
    fidelity: dict[str, dict[str, Any]],
    vs_original: dict[str, dict[str, dict[str, Any]]],
    int8_vs_float: dict[str, dict[str, Any]] | None,
    target_cosine: float,
) -> tuple[str, str]:
    """(variant, why) by the rule in the module docstring."""
    reasons = []
    if "int8" not in paths:
        reasons.append(f"no weight is wide enough for int8 to pay (both sides >= {MIN_INT8_SIDE})")
    elif not keeps_quality(fidelity["int8"], target_cosine):
        f = fidelity["int8"]
        reasons.append(
            f"int8 missed the quality target (cosine {f['cosine_mean']:.4f} vs {target_cosine}"
            + (f", top-1 agreement {f['top1_agreement']:.3f} vs {MIN_TOP1_AGREEMENT}" if "top1_agreement" in f else "")
            + ")"
        )
    elif not _not_slower(vs_original["int8"]):
        reasons.append("int8 measured slower than the original at " + _where(vs_original["int8"], "slower"))
    elif int8_vs_float is not None and not _not_slower(int8_vs_float):
        reasons.append("int8 measured slower than the optimized float model at " + _where(int8_vs_float, "slower"))
    else:
        against = int8_vs_float if int8_vs_float is not None else vs_original["int8"]
        if any(s["verdict"] == "faster" for s in against.values()):
            return "int8", f"int8 keeps quality and measured faster than float at {_where(against, 'faster')}, slower at none"
        reasons.append("int8 was not measurably faster than the optimized float model at any batch size")
    if "optimized_float" in paths and keeps_quality(fidelity["optimized_float"], target_cosine):
        optimized = vs_original["optimized_float"]
        # Only when measurably faster: a rewrite within the noise at the timed batch sizes can be
        # slower at another (digits CNN, batch 64: 0.94x), and the original is never slower than itself.
        if _not_slower(optimized) and any(s["verdict"] == "faster" for s in optimized.values()):
            return "optimized_float", "; ".join(reasons) + ": the float model is delivered, with onnxruntime's graph optimizations"
        reasons.append("the optimized float model was not measurably faster than the original" if _not_slower(optimized)
                       else "the optimized float model measured slower than the original")
    return "original", "; ".join(reasons) + ": the original is delivered unchanged"


def _where(speedups: dict[str, dict[str, Any]], verdict: str) -> str:
    return "batch size " + ", ".join(f"{bs} ({s['value']:.2f}x)" for bs, s in speedups.items() if s["verdict"] == verdict)
