"""Head-pruned BERT-style checkpoints: saved as plain config + safetensors, loaded by Shrink.

transformers 5 dropped ``config.pruned_heads`` and BERT derives the head size from
``hidden_size / num_attention_heads``, so no stock config can say "8 heads of 32 dims in a
384-wide model". The pruned checkpoint keeps the original ``num_attention_heads`` (hence the head
size) and records the heads each layer kept under ``shrink_attention_heads``; ``engine.formats.hf.load_model``
builds the architecture from the config, narrows query/key/value and the attention output
projection to those heads, then loads the safetensors weights strictly.
"""

from __future__ import annotations

from typing import Any

CONFIG_KEY = "shrink_attention_heads"


def record_heads(config: Any, heads: list[int]) -> None:
    if all(h == config.num_attention_heads for h in heads):
        if hasattr(config, CONFIG_KEY):
            delattr(config, CONFIG_KEY)
        return
    setattr(config, CONFIG_KEY, list(heads))


def recorded_heads(config: Any) -> list[int] | None:
    heads = getattr(config, CONFIG_KEY, None)
    return [int(h) for h in heads] if heads else None


def narrow_attention(model: Any, heads: list[int]) -> None:
    import torch.nn as nn

    from engine.pruning.structured import transformer_layout

    layout = transformer_layout(model)
    if len(layout.attention) != len(heads):
        raise ValueError(
            f"{CONFIG_KEY} lists {len(heads)} layers; the model has {len(layout.attention)}"
        )
    owners = {
        id(a): parent
        for parent in model.modules()
        for a in parent.children()
        if hasattr(a, "query")
    }
    for attention, count in zip(layout.attention, heads, strict=True):
        width = count * attention.attention_head_size
        for name in ("query", "key", "value"):
            old = getattr(attention, name)
            setattr(attention, name, nn.Linear(old.in_features, width, bias=old.bias is not None))
        attention.num_attention_heads = count
        attention.all_head_size = width
        # BERT's BertAttention holds ``self`` (the heads) and ``output.dense`` (back to hidden).
        projection = owners[id(attention)].output.dense
        owners[id(attention)].output.dense = nn.Linear(
            width, projection.out_features, bias=projection.bias is not None
        )
