"""Option types the low-rank configs share (engine/passes/lowrank_*.py), and how their
``exclude`` patterns match.

Each type states a field's kind and bounds once; every config keeps its own default and
description, which the capabilities schema publishes. Light on purpose: pass modules import it
when the registry lists capabilities, which must not load torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field

# Share of a layer's parameters or channels kept (SVD param_ratio, Tucker-2 rank_ratio).
KeptShare = Annotated[float, Field(ge=0.05, le=0.95)]

# Share of the squared singular values the energy rank rule keeps.
EnergyShare = Annotated[float, Field(ge=0.5, le=0.9999)]

# Regular expressions on layer names; a layer any of them matches (re.search) stays dense.
LayerPatterns = Annotated[list[str], Field(default_factory=list)]

# Which linear layers SVD factorizes: all, or the MLP expand/contract layers of transformers.
Target = Literal["all", "ffn"]

# How SVD chooses each linear layer's rank; how Tucker-2 chooses each convolution's two ranks.
RankRule = Literal["sensitivity", "uniform", "energy"]
TuckerRankRule = Literal["ratio", "energy"]


def excluded_by(patterns: list[str]) -> Callable[..., bool]:
    """A test of names against ``patterns``: true when any pattern matches any of the names."""
    compiled = [re.compile(p) for p in patterns]

    def excluded(*names: str) -> bool:
        return any(p.search(name) for p in compiled for name in names)

    return excluded
