"""ONNX models: inspection, external-data checks, sessions and inputs from the signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelFormatUnsupported


def load_proto(path: Path, *, with_data: bool = True) -> Any:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelFormatUnsupported(f"the file is not a valid ONNX model: {exc}") from None
    if model.ir_version <= 0 or len(model.graph.node) == 0:
        raise ModelFormatUnsupported("the file is not an ONNX model (no graph found)")
    check_external_data(model, path.parent)
    if with_data:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
    return model


def save_proto(proto: Any, dest: Path) -> Path:
    """Write ``proto`` to ``dest``; past protobuf's 2 GiB limit, its weights go to an external file
    beside the graph (``<dest name>.data``)."""
    import onnx

    dest.parent.mkdir(parents=True, exist_ok=True)
    large = proto.ByteSize() > 1_800_000_000
    onnx.save_model(proto, str(dest), save_as_external_data=large, location=f"{dest.name}.data")
    return dest


def check_external_data(model: Any, folder: Path) -> None:
    """External-data locations must stay inside the model's folder: a crafted location
    must never read a file of the server."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    root = folder.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise ModelFormatUnsupported(
                f"external data of tensor {tensor.name!r} points outside the model's folder",
                detail={"tensor": tensor.name, "location": location},
            )
        if not target.is_file():
            raise ModelFormatUnsupported(
                f"external data file {location!r} of tensor {tensor.name!r} is missing from the archive",
                detail={"tensor": tensor.name, "location": location},
            )


def _value_info(vi: Any) -> dict[str, Any]:
    from onnx import helper

    ttype = vi.type.tensor_type
    shape: list[int | str] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        else:
            shape.append(d.dim_param or "?")
    try:
        dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)))
    except Exception:
        dtype = str(ttype.elem_type)
    return {"name": vi.name, "shape": shape, "dtype": dtype}


def signature(model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_value_info(i) for i in model.graph.input if i.name not in initializers]
    outputs = [_value_info(o) for o in model.graph.output]
    limits = _index_limits(model)
    for spec in inputs:
        if spec["name"] in limits:
            spec["index_limit"] = limits[spec["name"]]
    return inputs, outputs


def _index_limits(model: Any) -> dict[str, int]:
    """Inputs that index an embedding table (a Gather on an initializer, or onnxruntime's fused
    EmbedLayerNormalization; directly or through a Cast): the table's row count, so that
    generated token ids stay inside the vocabulary."""
    tables = {t.name: int(t.dims[0]) for t in model.graph.initializer if len(t.dims) >= 1}
    sources = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast"}
    lookups = []  # (indices, table)
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2:
            lookups.append((node.input[1], node.input[0]))
        elif node.op_type == "EmbedLayerNormalization" and len(node.input) > 4:
            lookups += [(node.input[0], node.input[2]), (node.input[1], node.input[4])]
    limits: dict[str, int] = {}
    for indices, table in lookups:
        if table in tables and indices:
            name = sources.get(indices, indices)
            limits[name] = min(limits.get(name, tables[table]), tables[table])
    return limits


def count_params(model: Any) -> int:
    total = 0
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= int(d)
        total += n
    return total


def inspect_onnx(path: Path) -> dict[str, Any]:
    import onnx

    model = load_proto(path, with_data=False)
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelFormatUnsupported(f"the ONNX model does not pass onnx.checker: {exc}") from None
    inputs, outputs = signature(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    op_types: dict[str, int] = {}
    for node in model.graph.node:
        op_types[node.op_type] = op_types.get(node.op_type, 0) + 1
    return {
        "format": "onnx",
        "inputs": inputs,
        "outputs": outputs,
        "opset": opset,
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "params": count_params(model),
        "nodes": len(model.graph.node),
        "op_types": op_types,
    }


def session(path: Path, *, threads: int = 0, providers: list[str] | None = None, spin_between_runs: bool = True) -> Any:
    """An onnxruntime session. ``spin_between_runs=False``: its workers still spin during a run,
    and stop as soon as it returns (``session.force_spinning_stop``).

    Why the benchmark stops them: each session's workers otherwise spin for a while after a run,
    waiting for more work. Timing models round after round, the workers of the model that had
    just run spun on the cores the next model needed: on MiniLM at batch 8 (2 cores) every model
    ran about 1.5x slower interleaved than alone, which distorted the ratios both ways
    (docs/benchmarks.md). Turning spinning off altogether (``allow_spinning=0``) also ends it
    but makes every parallel kernel wake sleeping workers, which a serving process does not pay
    and which taxed graphs of many short kernels (int8) more than fp32. onnxruntime's process-wide
    pool would also end it, but once that pool exists every later session in the process must use
    it, the quantizer's own included.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spin_between_runs:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


# Names that BERT-like graphs give their integer inputs, and what a neutral value for each is.
_MASK_NAMES = ("attention_mask", "input_mask", "mask")
_ZERO_NAMES = ("token_type_ids", "segment_ids", "position_ids")


def sample_feeds(
    inputs: list[dict[str, Any]], *, batch: int, seq_len: int = 64, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Inputs generated from the signature when the job has no dataset.

    The first symbolic dimension is the batch; other symbolic dimensions take ``seq_len``.
    Integer inputs get token-like ids inside the embedding table when the signature knows its size
    (masks get ones), float inputs a standard normal.
    """
    rng = rng or np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = []
        for i, d in enumerate(spec["shape"]):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            else:
                shape.append(batch if i == 0 else seq_len)
        dtype = np.dtype(spec["dtype"]) if spec["dtype"] not in ("", "?") else np.dtype("float32")
        name = spec["name"].lower()
        if np.issubdtype(dtype, np.integer):
            if any(k in name for k in _MASK_NAMES):
                arr = np.ones(shape, dtype=dtype)
            elif any(k in name for k in _ZERO_NAMES):
                arr = np.zeros(shape, dtype=dtype)
            else:
                limit = int(spec.get("index_limit") or 5000)
                arr = rng.integers(min(1000, limit // 4), min(5000, limit), size=shape).astype(dtype)
        elif dtype == np.bool_:
            arr = np.ones(shape, dtype=bool)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        feeds[spec["name"]] = arr
    return feeds
