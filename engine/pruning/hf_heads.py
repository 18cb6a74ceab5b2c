"""Head-pruned BERT-style checkpoints: which heads each layer kept, recorded in the config.

transformers 5 dropped ``config.pruned_heads`` and BERT derives the head size from
``hidden_size / num_attention_heads``, so no stock config can say "8 heads of 32 dims in a
384-wide model". The pruned checkpoint keeps the original ``num_attention_heads`` (hence the head
size) and records the heads each layer kept under ``shrink_attention_heads``;
``engine.formats.modeling_shrink`` (also shipped in the checkpoint, for stock transformers with
``trust_remote_code=True``) builds the architecture from the config and narrows query/key/value
and the attention output projection to those heads before the weights load.
"""

from __future__ import annotations

from typing import Any

from engine.formats.modeling_shrink import HEADS_KEY as CONFIG_KEY


def record_heads(config: Any, heads: list[int]) -> None:
    if all(h == config.num_attention_heads for h in heads):
        if hasattr(config, CONFIG_KEY):
            delattr(config, CONFIG_KEY)
        return
    setattr(config, CONFIG_KEY, list(heads))

