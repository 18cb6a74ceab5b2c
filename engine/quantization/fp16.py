"""fp16 conversion of an ONNX model with onnxruntime's ``convert_float_to_float16``."""

from __future__ import annotations

from pathlib import Path

from engine.formats import onnx_model


def convert(src: Path, dest: Path, *, keep_io_types: bool, op_block_list: list[str], nodes_to_exclude: list[str]) -> Path:
    """``src`` in float16 into ``dest``. ``op_block_list`` adds to onnxruntime's default list of
    operator types kept in float32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    converted = convert_float_to_float16(
        onnx_model.load_proto(src),
        keep_io_types=keep_io_types,
        op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(op_block_list)),
        node_block_list=nodes_to_exclude or None,
    )
    return onnx_model.save_proto(converted, dest)
