"""Putting factorized layers into a module, and recording them so the model loads again.

transformers cannot express a Linear split in two, and Shrink never runs custom model code. A
factorized Hugging Face checkpoint therefore records its factorized layers in ``config.json``
(key ``shrink_low_rank``: module path -> layer spec); ``engine.formats.hf.load_model`` rebuilds
that structure before loading the safetensors weights. ONNX models need nothing: the graph is
the structure.
"""

from __future__ import annotations

from typing import Any

CONFIG_KEY = "shrink_low_rank"


def set_submodule(root: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def factorized_linear(in_features: int, out_features: int, rank: int, bias: bool) -> Any:
    """x -> Linear(in, rank, no bias) -> Linear(rank, out): W ~ B @ A."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias)
    )


def tucker2_conv(conv: Any, rank_in: int, rank_out: int) -> Any:
    """1x1 (in -> rank_in), kxk (rank_in -> rank_out, the conv's stride/padding), 1x1 (-> out)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(conv.in_channels, rank_in, 1, bias=False),
        nn.Conv2d(
            rank_in,
            rank_out,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=False,
        ),
        nn.Conv2d(rank_out, conv.out_channels, 1, bias=conv.bias is not None),
    )


def cp_conv(conv: Any, rank: int) -> Any:
    """CP (Lebedev et al. 2015): 1x1 (in -> rank), depthwise kx1, depthwise 1xk, 1x1 (-> out)."""
    import torch.nn as nn

    kh, kw = conv.kernel_size
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, rank, 1, bias=False),
        nn.Conv2d(
            rank,
            rank,
            (kh, 1),
            stride=(conv.stride[0], 1),
            padding=(conv.padding[0], 0),
            dilation=(conv.dilation[0], 1),
            groups=rank,
            bias=False,
        ),
        nn.Conv2d(
            rank,
            rank,
            (1, kw),
            stride=(1, conv.stride[1]),
            padding=(0, conv.padding[1]),
            dilation=(1, conv.dilation[1]),
            groups=rank,
            bias=False,
        ),
        nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None),
    )


def record(module: Any, name: str, spec: dict[str, Any]) -> None:
    """Remember a factorized layer in an HF model's config (saved to config.json)."""
    config = getattr(module, "config", None)
    if config is None:
        return
    specs = dict(getattr(config, CONFIG_KEY, None) or {})
    specs[name] = spec
    setattr(config, CONFIG_KEY, specs)


def _empty_like(spec: dict[str, Any], current: Any) -> Any:
    import torch.nn as nn

    kind = spec["kind"]
    if kind == "linear":
        return factorized_linear(
            current.in_features, current.out_features, int(spec["rank"]), current.bias is not None
        )
    conv = current if isinstance(current, nn.Conv2d) else None
    if conv is None:
        raise ValueError(f"{kind} needs a Conv2d")
    if kind == "tucker2":
        return tucker2_conv(conv, int(spec["rank_in"]), int(spec["rank_out"]))
    if kind == "cp":
        return cp_conv(conv, int(spec["rank"]))
    raise ValueError(f"unknown factorized layer kind {kind!r}")


def rebuild(module: Any, specs: dict[str, dict[str, Any]]) -> Any:
    """Replace the recorded layers of a freshly built model with empty factorized ones."""
    for name, spec in specs.items():
        set_submodule(module, name, _empty_like(spec, module.get_submodule(name)))
    return module
