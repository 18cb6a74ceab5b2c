"""The option types of the pruning configs (engine/passes/prune_*.py), which the mechanics take.

Each type states a field's kind and bounds once; every config keeps its own default and
description, which the capabilities schema publishes. Light on purpose: pass modules import it
when the registry lists capabilities, which must not load torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

# A share of the weights (or channels, or MACs) strictly between none and all.
Fraction = Annotated[float, Field(gt=0, lt=1)]

# global: one magnitude threshold across all weights; local: the same share in each weight.
Scope = Literal["global", "local"]


Pattern = Literal["unstructured", "2:4"]
Schedule = Literal["cubic", "linear"]
Importance = Literal["l2", "l1", "taylor"]
