"""Putting factorized layers into a module, and recording them so the model loads again.

transformers cannot express a Linear split in two. A factorized Hugging Face checkpoint
therefore records its factorized layers in ``config.json`` (key ``shrink_low_rank``: module path
-> layer spec), and ``engine.formats.modeling_shrink`` rebuilds that structure before the
safetensors weights load. ONNX models need nothing: the graph is the structure.
"""

from __future__ import annotations

from typing import Any

# The layer constructors live with the model code shipped in checkpoints, so that Shrink and a
# user's ``AutoModel.from_pretrained(..., trust_remote_code=True)`` build the same structure.
from engine.formats.modeling_shrink import (  # noqa: F401  (re-exported for the low-rank passes)
    LOW_RANK_KEY as CONFIG_KEY,
    cp_conv,
    factorized_linear,
    set_submodule,
    tucker2_conv,
)


def record(module: Any, name: str, spec: dict[str, Any]) -> None:
    """Remember a factorized layer in an HF model's config (saved to config.json)."""
    config = getattr(module, "config", None)
    if config is None:
        return
    specs = dict(getattr(config, CONFIG_KEY, None) or {})
    specs[name] = spec
    setattr(config, CONFIG_KEY, specs)
