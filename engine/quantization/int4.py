"""Block-wise 4-bit (or 8-bit) weight-only MatMul: onnxruntime's ``MatMulNBitsQuantizer``."""

from __future__ import annotations

from pathlib import Path

from engine.formats import onnx_model
from engine.quantization import onnx_quant


def quantize(
    src: Path, dest: Path, *, bits: int, block_size: int, symmetric: bool, accuracy_level: int, nodes_to_exclude: list[str]
) -> Path | None:
    """``src``'s MatMul weights as ``MatMulNBits`` into ``dest``; None (nothing written) when no
    MatMul could be quantized (no constant weight with K a multiple of 16)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    onnx_quant.quiet_quantization_logging()
    quantizer = MatMulNBitsQuantizer(
        onnx_model.load_proto(src),
        bits=bits,
        block_size=block_size,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        nodes_to_exclude=nodes_to_exclude,
    )
    quantizer.process()
    onnx_quant.quiet_quantization_logging()
    if not any(n.op_type == "MatMulNBits" for n in quantizer.model.model.graph.node):
        return None
    quantizer.model.save_model_to_file(str(dest), use_external_data_format=False)
    return dest
