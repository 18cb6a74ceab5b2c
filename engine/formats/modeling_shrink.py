"""Model code for Hugging Face checkpoints whose structure transformers cannot state.

Two restructurings have no stock config field: attention heads removed per layer by
``prune.structured`` (transformers 5 dropped ``pruned_heads`` and derives the head size from
``hidden_size / num_attention_heads``) and Linear/Conv layers split in two or three by the
low-rank passes. Such a checkpoint records its structure in ``config.json``
(``shrink_attention_heads``: heads kept per layer; ``shrink_low_rank``: module path -> layer spec).

This file is written into the checkpoint as ``modeling_shrink.py``, with ``auto_map`` pointing
at it, so users load the result with stock transformers::

    AutoModel.from_pretrained(folder, trust_remote_code=True)

It therefore imports only torch and transformers. Shrink itself never runs a checkpoint's code:
``engine.formats.hf`` imports this module from the engine and applies the same ``restructure``.
Each generated class builds the stock architecture from the config, then narrows or splits the
recorded layers before transformers loads the safetensors weights into them.

A factorized checkpoint also carries an empty tensor under each split layer's original weight
name (``guard_keys``). Loaded without ``trust_remote_code``, transformers would otherwise build
the stock layers, find none of their weights, initialise them randomly and only list them as
MISSING in its load report; the empty tensor makes it stop with a size mismatch instead. The
classes here skip those tensors.
"""

from __future__ import annotations

import re
from typing import Any

import torch.nn as nn
import transformers

HEADS_KEY = "shrink_attention_heads"
LOW_RANK_KEY = "shrink_low_rank"


def attention_modules(model: Any) -> list[Any]:
    """BERT-style self-attention modules (query/key/value Linears and a head size), in order."""
    return [
        m
        for m in model.modules()
        if all(isinstance(getattr(m, n, None), nn.Linear) for n in ("query", "key", "value"))
        and hasattr(m, "num_attention_heads")
        and hasattr(m, "attention_head_size")
    ]


def narrow_attention(model: Any, heads: list[int]) -> None:
    """Give each layer's attention ``heads[i]`` heads of the config's head size (empty weights)."""
    layers = attention_modules(model)
    if len(layers) != len(heads):
        raise ValueError(f"{HEADS_KEY} lists {len(heads)} layers; the model has {len(layers)}")
    # BERT's BertAttention holds ``self`` (the heads) and ``output.dense`` (back to hidden).
    owners = {id(child): parent for parent in model.modules() for child in parent.children()}
    for attention, count in zip(layers, heads, strict=True):
        width = int(count) * attention.attention_head_size
        for name in ("query", "key", "value"):
            old = getattr(attention, name)
            setattr(attention, name, nn.Linear(old.in_features, width, bias=old.bias is not None))
        attention.num_attention_heads = int(count)
        attention.all_head_size = width
        owner = owners[id(attention)]
        projection = owner.output.dense
        owner.output.dense = nn.Linear(width, projection.out_features, bias=projection.bias is not None)


def set_submodule(root: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def factorized_linear(in_features: int, out_features: int, rank: int, bias: bool) -> nn.Sequential:
    """x -> Linear(in, rank, no bias) -> Linear(rank, out): W ~ B @ A."""
    return nn.Sequential(nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias))


def tucker2_conv(conv: nn.Conv2d, rank_in: int, rank_out: int) -> nn.Sequential:
    """1x1 (in -> rank_in), kxk (rank_in -> rank_out, the conv's stride/padding), 1x1 (-> out)."""
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, rank_in, 1, bias=False),
        nn.Conv2d(
            rank_in, rank_out, conv.kernel_size,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=False,
        ),
        nn.Conv2d(rank_out, conv.out_channels, 1, bias=conv.bias is not None),
    )


def cp_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """CP (Lebedev et al. 2015): 1x1 (in -> rank), depthwise kx1, depthwise 1xk, 1x1 (-> out)."""
    kh, kw = conv.kernel_size
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, rank, 1, bias=False),
        nn.Conv2d(
            rank, rank, (kh, 1), stride=(conv.stride[0], 1), padding=(conv.padding[0], 0),
            dilation=(conv.dilation[0], 1), groups=rank, bias=False,
        ),
        nn.Conv2d(
            rank, rank, (1, kw), stride=(1, conv.stride[1]), padding=(0, conv.padding[1]),
            dilation=(1, conv.dilation[1]), groups=rank, bias=False,
        ),
        nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None),
    )


def empty_factorized(spec: dict[str, Any], current: Any) -> nn.Sequential:
    """The empty factorized layer that ``spec`` describes, in place of ``current``."""
    kind = spec["kind"]
    if kind == "linear":
        return factorized_linear(current.in_features, current.out_features, int(spec["rank"]), current.bias is not None)
    if not isinstance(current, nn.Conv2d):
        raise ValueError(f"{kind} needs a Conv2d")
    if kind == "tucker2":
        return tucker2_conv(current, int(spec["rank_in"]), int(spec["rank_out"]))
    if kind == "cp":
        return cp_conv(current, int(spec["rank"]))
    raise ValueError(f"unknown factorized layer kind {kind!r}")


def restructure(model: Any, config: Any) -> Any:
    """Apply the structure ``config`` records to a freshly built model: heads first, then the
    factorized layers (their paths name modules of the narrowed model)."""
    heads = getattr(config, HEADS_KEY, None)
    if heads:
        narrow_attention(model, [int(h) for h in heads])
    for name, spec in (getattr(config, LOW_RANK_KEY, None) or {}).items():
        set_submodule(model, name, empty_factorized(spec, model.get_submodule(name)))
    return model


def guard_keys(config: Any) -> list[str]:
    """The original weight name of each factorized layer: where the checkpoint keeps an empty
    tensor so that a stock load fails instead of initialising those layers randomly."""
    return [f"{name}.weight" for name in (getattr(config, LOW_RANK_KEY, None) or {})]


def shrink_class(base_name: str) -> type:
    """``Shrink<base_name>``: the transformers class, restructured as its config records."""
    base = getattr(transformers, base_name)

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, config, *args, **kwargs)
        restructure(self, config)
        guards = [re.escape(key) + "$" for key in guard_keys(config)]
        current = self._keys_to_ignore_on_load_unexpected  # a set since transformers 5, a list before
        if isinstance(current, set):
            self._keys_to_ignore_on_load_unexpected = current | set(guards)
        else:
            self._keys_to_ignore_on_load_unexpected = list(current or []) + guards

    return type(f"Shrink{base_name}", (base,), {"__init__": __init__, "__module__": __name__})
