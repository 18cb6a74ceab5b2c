"""PyTorch <-> ONNX: ONNX graphs become ``GraphModule``s (onnx2torch, no pickle involved) so every
PyTorch pass applies to them, and PyTorch models are exported back to ONNX."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path
from typing import Any

from engine.errors import ConversionUnsupported
from engine.formats import onnx_model

# onnx2torch converters that need torchvision, whose PyPI build does not load beside the CPU
# torch wheel (see requirements-nodeps.txt). Graphs using them are refused by name.
_TORCHVISION_OPS = ("NonMaxSuppression", "RoiAlign")


def _register_missing_versions(onnx2torch: Any) -> None:
    """Opset 16 revised GreaterOrEqual/LessOrEqual only to admit bfloat16; onnx2torch 1.5.15
    registers just the opset-12 versions, so graphs exported at opset 16+ (transformers' attention
    masks) were refused. Same converter, newer version number."""
    from onnx2torch.node_converters.comparisons import _TORCH_FUNCTION_FROM_ONNX_TYPE, OnnxCompare
    from onnx2torch.node_converters.registry import (
        _CONVERTER_REGISTRY,
        OperationDescription,
        add_converter,
    )
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    for op_type in ("GreaterOrEqual", "LessOrEqual"):
        if OperationDescription(domain="", operation_type=op_type, version=16) in _CONVERTER_REGISTRY:
            continue
        assert op_type in _TORCH_FUNCTION_FROM_ONNX_TYPE

        @add_converter(operation_type=op_type, version=16)
        def _convert(node: Any, graph: Any) -> Any:
            return OperationConverterResult(
                torch_module=OnnxCompare(operation_type=node.operation_type),
                onnx_mapping=onnx_mapping_from_node(node=node),
            )


def _import_onnx2torch() -> Any:
    module = sys.modules.get("onnx2torch")
    if module is None:
        module = _import_onnx2torch_once()
        _register_missing_versions(module)
    return module


def _import_onnx2torch_once() -> Any:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        # Only onnx2torch's NMS/RoiAlign modules reference torchvision at import; give them a
        # placeholder for the import alone, then take it away so no other library sees it.
        placeholder = types.ModuleType("torchvision")
        ops = types.ModuleType("torchvision.ops")

        def _unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ConversionUnsupported("NonMaxSuppression/RoiAlign need torchvision, which is not installed")

        ops.roi_align = ops.nms = ops.box_convert = _unavailable  # type: ignore[attr-defined]
        placeholder.ops = ops  # type: ignore[attr-defined]
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = placeholder, ops
        try:
            import onnx2torch
        finally:
            sys.modules.pop("torchvision", None)
            sys.modules.pop("torchvision.ops", None)
        return onnx2torch
    import onnx2torch

    return onnx2torch


def unsupported_operators(model: Any) -> list[str]:
    """Operators of the graph that onnx2torch cannot convert, as ``domain::Op`` names."""
    _import_onnx2torch()
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing = set()
    for node in model.graph.node:
        domain = node.domain or ""
        if node.op_type in _TORCHVISION_OPS:
            missing.add(f"{domain or 'ai.onnx'}::{node.op_type}")
            continue
        version = opsets.get(domain, opsets.get("ai.onnx", opsets.get("", 17)))
        try:
            get_converter(node.op_type, version, domain=domain)
        except NotImplementedError:
            missing.add(f"{domain or 'ai.onnx'}::{node.op_type}")
    return sorted(missing)


def require_convertible(model: Any) -> None:
    """Refuse, naming the operators, a graph onnx2torch cannot convert (a pass's early check)."""
    missing = unsupported_operators(model)
    if missing:
        raise ConversionUnsupported(
            f"this ONNX graph cannot be converted to PyTorch: unsupported operators {', '.join(missing)}; "
            "ONNX-only passes (quantize, onnx magnitude pruning, onnx low-rank) still apply",
            detail={"unsupported_operators": missing},
        )


def onnx_to_torch(path: Path) -> Any:
    """Convert an ONNX file to a ``torch.fx.GraphModule`` (float parameters, eval mode)."""
    model = onnx_model.load_proto(path)
    require_convertible(model)
    onnx2torch = _import_onnx2torch()
    try:
        module = onnx2torch.convert(model)
    except Exception as exc:
        raise ConversionUnsupported(f"onnx2torch could not convert this graph: {exc}") from None
    module.eval()
    return module


def buffers_to_parameters(module: Any) -> Any:
    """Make float weight buffers trainable parameters.

    onnx2torch stores the constant operand of a MatMul (a transformer's weights) as a buffer;
    training, pruning and low-rank passes need them as parameters.
    """
    import torch

    for sub in module.modules():
        for name, buf in list(sub.named_buffers(recurse=False)):
            # ``*_mask`` buffers are torch.nn.utils.prune masks: they must stay fixed while training.
            if name.endswith("_mask"):
                continue
            if buf is not None and buf.is_floating_point() and buf.dim() >= 2:
                delattr(sub, name)
                sub.register_parameter(name, torch.nn.Parameter(buf.detach().clone()))
    return module


def export_onnx(
    module: Any,
    example: tuple[Any, ...],
    dest: Path,
    *,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Export with the same input/output names and symbolic axes as the signature gives.

    ``dynamo``: torch's ``torch.export``-based exporter (opset 18 at least, one file) instead of
    the TorchScript one Shrink uses; users' own exports come either way."""
    import torch

    if dynamo:
        return _export_dynamo(module, example, dest, inputs=inputs, outputs=outputs, opset=max(opset, 18))

    dynamic_axes: dict[str, dict[int, str]] = {}
    for spec in [*inputs, *outputs]:
        axes = {i: str(d) for i, d in enumerate(spec["shape"]) if not (isinstance(d, int) and d > 0)}
        if axes:
            dynamic_axes[spec["name"]] = axes
    dest.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            example,
            str(dest),
            input_names=[s["name"] for s in inputs],
            output_names=[s["name"] for s in outputs],
            dynamic_axes=dynamic_axes or None,
            opset_version=opset,
            dynamo=False,
        )
    return dest


def _export_dynamo(module: Any, example: tuple[Any, ...], dest: Path, *, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], opset: int) -> Path:
    import torch

    dims: dict[str, Any] = {}

    def dim(name: Any) -> Any:
        if not str(name).isidentifier():
            return torch.export.Dim.DYNAMIC
        return dims.setdefault(str(name), torch.export.Dim(str(name)))

    dynamic_shapes: tuple[Any, ...] = tuple(
        {i: dim(d) for i, d in enumerate(spec["shape"]) if not (isinstance(d, int) and d > 0)} or None for spec in inputs
    )
    parameters = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):  # forward(*args): one argument
        dynamic_shapes = (dynamic_shapes,)
    dest.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module, example, str(dest), input_names=[s["name"] for s in inputs], output_names=[s["name"] for s in outputs],
            dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )  # fmt: skip
    return dest


def export_hf_onnx(
    model: Any, folder: Path, dest: Path, *, seq_len: int = 16, attention: str = "eager", dynamo: bool = False
) -> Path:
    """Export a transformers model to ONNX with ``last_hidden_state`` (or ``logits``) as output.

    ``attention``: the transformers attention implementation traced (``sdpa`` is what a user's
    own export gets by default; the benchmarks compare both). ``dynamo``: torch's newer exporter
    (``torch.onnx.export(dynamo=True)``) rather than the TorchScript one."""
    import torch

    from engine.formats import hf

    names = hf.input_names(folder)
    # Eager attention exports as plain MatMul/Softmax ops that onnxruntime's transformer optimizer
    # fuses into its Attention kernel (engine/quantization/attention_fusion.py); the default ``sdpa``
    # exports a pattern it does not recognise, matched by Shrink's own rewrite (sdpa_rewrite.py).
    # Both compute the same function; eager stays Shrink's export, the one fused most directly.
    # Put back afterwards: the caller's model is only borrowed for the trace.
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attention)
    # torch.export specialises a dimension of size 1 to a constant: two rows keep batch dynamic.
    rows = 2 if dynamo else 1
    example = {n: torch.ones(rows, seq_len, dtype=torch.long) for n in names}
    if "token_type_ids" in example:
        example["token_type_ids"] = torch.zeros(rows, seq_len, dtype=torch.long)

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            out = self.inner(**dict(zip(names, args, strict=True)), return_dict=True)
            return out["logits"] if "logits" in out else out["last_hidden_state"]

    wrapper = _Wrapper(model).eval()
    is_classifier = "ForSequenceClassification" in type(model).__name__
    output = "logits" if is_classifier else "last_hidden_state"
    out_shape: list[int | str] = ["batch", "classes"] if is_classifier else ["batch", "sequence", "hidden"]
    try:
        return export_onnx(
            wrapper,
            tuple(example[n] for n in names),
            dest,
            inputs=[{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in names],
            outputs=[{"name": output, "shape": out_shape, "dtype": "float32"}],
            dynamo=dynamo,
        )
    finally:
        if previous is not None and previous != attention:
            model.set_attn_implementation(previous)
