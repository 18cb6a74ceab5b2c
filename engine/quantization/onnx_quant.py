"""Building blocks the ONNX quantization passes share: pre-processing, dynamic int8, the inputs a
pass measures fidelity on, and a calibration reader over the job's dataset.

One module, so that ``quantize.dynamic``, ``quantize.mixed`` and ``quantize.auto`` run exactly the
same quantizer call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engine import hardware
from engine.context import PassContext
from engine.data import Dataset, onnx_feeds
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization.options import ReduceRange


def quiet_quantization_logging() -> None:
    """onnxruntime.quantization logs every node at INFO, and importing matmul_nbits_quantizer calls
    ``logging.basicConfig(level=INFO)``: put the root logger back to WARNING."""
    root = logging.getLogger()
    if root.level < logging.WARNING:
        root.setLevel(logging.WARNING)


def as_onnx(model: ModelFile, ctx: PassContext) -> ModelFile:
    """The model itself when it is ONNX; an HF checkpoint exported to ONNX (``origin`` stays
    "hf"), because int8 here means onnxruntime's int8 operators."""
    if model.format == "onnx":
        return model
    from engine.formats import hf, torch_bridge

    dest = ctx.subdir("exported") / "model.onnx"
    torch_bridge.export_hf_onnx(hf.load_model(model.path, task_head=True), model.path, dest)
    return model.with_path(dest, "onnx")


def run_pre_process(src: Path, dest: Path) -> bool:
    """onnxruntime's ``quant_pre_process`` (constant folding, basic graph optimization, shape
    inference) of ``src`` into ``dest``, which the quantizer needs to see every MatMul's types;
    whether ``dest`` was written. Symbolic shape inference fails on transformers' exports, so it is
    skipped.

    It is given a file: ``quant_pre_process`` also takes a ModelProto, but empties that proto's
    initializers (onnxruntime 1.32 hands them to its session as external data) and, when its
    optimizer fails, writes the emptied graph as its result."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dest), skip_symbolic_shape=True)
    except Exception:
        return False
    finally:
        quiet_quantization_logging()
    return dest.is_file()


def preprocess(src: Path, dest: Path) -> Path:
    """``run_pre_process`` into ``dest``, then ``sum_residuals``; if pre-processing fails for a
    graph, ``src`` (quantize the original rather than fail the job)."""
    if not run_pre_process(src, dest):
        return src
    sum_residuals(dest)
    return dest


@contextmanager
def preprocessed(src: Path, work_dir: Path, *, enabled: bool = True) -> Iterator[Path]:
    """``preprocess`` of ``src`` into ``work_dir`` for the length of the block, removed after it;
    ``src`` itself when ``enabled`` is false or pre-processing fails."""
    path = preprocess(src, work_dir / "preprocessed.onnx") if enabled else src
    try:
        yield path
    finally:
        if path != src:
            path.unlink(missing_ok=True)


def sum_residuals(path: Path) -> int:
    """Rewrite ``path`` (a file the pass made, never its input) in place with its residual sums as
    ``Sum`` nodes (``residual_sum``: keeps onnxruntime from running them as its slow
    SkipLayerNormalization); how many normalizations read a ``Sum`` now."""
    from engine.quantization import residual_sum

    proto = onnx_model.load_proto(path)
    count = residual_sum.rewrite(proto)
    if count:
        onnx_model.save_proto(proto, path)
    return count


def weight_matmuls(proto: Any) -> list[str]:
    """Names of the MatMul/Conv (and fused Attention) nodes with a constant weight: the layers
    dynamic int8 changes (onnxruntime has no dynamic int8 Gemm). ``proto`` may be loaded without
    its weights' data."""
    initializers = {t.name for t in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.op_type in ("MatMul", "Conv", "Attention") and len(n.input) > 1 and n.input[1] in initializers
    ]


def resolve_reduce_range(value: ReduceRange, ctx: PassContext) -> bool:
    """``auto`` -> whether this CPU's int8 kernels saturate; the choice goes into ``resolved``."""
    chosen = hardware.x86_int8_saturates() if value == "auto" else bool(value)
    ctx.resolved["reduce_range"] = chosen
    return chosen


def dynamic_int8(
    src: Path,
    dest: Path,
    *,
    weight: str = "int8",
    per_channel: bool = True,
    symmetric_weights: bool = True,
    reduce_range: bool = False,
    op_types: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """``onnxruntime.quantization.quantize_dynamic`` with the options our passes expose."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        model_input=str(src),
        model_output=str(dest),
        weight_type=QuantType.QInt8 if weight == "int8" else QuantType.QUInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        op_types_to_quantize=op_types,
        nodes_to_exclude=nodes_to_exclude or None,
        extra_options={
            "WeightSymmetric": symmetric_weights,
            # Nodes that shape inference could not type (contrib ops of an optimized graph) are
            # float tensors; without this hint the quantizer stops with "Unable to find data type".
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
    quiet_quantization_logging()
    _fold_gelu_bias(dest)
    return dest


def _fold_gelu_bias(path: Path) -> int:
    """The int8 MatMuls before a ``BiasGelu`` take its bias (``gelu_bias``), in place."""
    from engine.quantization import gelu_bias

    proto = onnx_model.load_proto(path)
    count = gelu_bias.rewrite(proto)
    if count:
        onnx_model.save_proto(proto, path)
    return count


def evaluation_feeds(
    model: Path | Any, ctx: PassContext, *, rows: int, batch_size: int = 8, sequence_length: int = 64
) -> list[dict[str, np.ndarray]]:
    """Inputs to measure fidelity on: rows of the job's dataset when it feeds the model, otherwise
    inputs generated from the signature. ``model`` is a file or a graph already in memory; only
    ``ctx.dataset`` is read."""
    from engine.bench.runners import batches

    proto = onnx_model.load_proto(model, with_data=False) if isinstance(model, Path) else model
    inputs, _ = onnx_model.signature(proto)
    return batches(
        inputs,
        dataset=ctx.dataset,
        batch_size=batch_size,
        rows=rows,
        sequence_length=sequence_length,
        tokenizer_folder=None,
    )


def run_outputs(model_path: Path, feeds: list[dict[str, np.ndarray]], threads: int = 0) -> list[list[np.ndarray]]:
    session = onnx_model.session(model_path, threads=threads)
    return [session.run(None, f) for f in feeds]


def fidelity(
    reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]], feeds: list[dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Candidate vs reference outputs on ``feeds`` (per-token outputs on real tokens only)."""
    from engine.bench.fidelity import compare, padding_masks

    return compare(reference, candidate, padding_masks(feeds))


class DatasetCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over the first ``samples`` rows of the
    job's dataset, ``batch_size`` rows at a time, cast to the model's input dtypes."""

    def __init__(self, dataset: Dataset, inputs: list[dict[str, Any]], *, samples: int, batch_size: int = 8):
        self.dataset = dataset
        self.inputs = inputs
        self.rows = min(samples, len(dataset))
        self.batch_size = batch_size
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.rows, self.batch_size):
            yield onnx_feeds(self.dataset, self.inputs, slice(start, min(start + self.batch_size, self.rows)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


class FeedsCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over batches already in memory
    (``evaluation_feeds``: the job's dataset rows, or inputs generated from the signature)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.rows = sum(len(next(iter(f.values()))) for f in feeds) if feeds else 0
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


CalibrationReader = DatasetCalibrationReader | FeedsCalibrationReader
