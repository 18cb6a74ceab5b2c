"""Recording factorized layers in an HF model's config, so that the checkpoint loads again.

transformers cannot express a Linear split in two. A factorized Hugging Face checkpoint
therefore records its factorized layers in ``config.json`` (key ``shrink_low_rank``: module path
-> layer spec), and ``engine.formats.modeling_shrink`` rebuilds that structure before the
safetensors weights load. The layer constructors live there too, so that Shrink and a user's
``AutoModel.from_pretrained(..., trust_remote_code=True)`` build the same layers. ONNX models
need nothing: the graph is the structure.
"""

from __future__ import annotations

from typing import Any

from engine.formats.modeling_shrink import LOW_RANK_KEY as CONFIG_KEY


def record(module: Any, name: str, spec: dict[str, Any]) -> None:
    """Remember a factorized layer in an HF model's config (saved to config.json)."""
    config = getattr(module, "config", None)
    if config is None:
        return
    specs = dict(getattr(config, CONFIG_KEY, None) or {})
    specs[name] = spec
    setattr(config, CONFIG_KEY, specs)
