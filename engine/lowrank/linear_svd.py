"""SVD of PyTorch Linear layers: W [out, in] ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), two Linears."""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np

from engine.lowrank import ranks as rank_rules
from engine.lowrank import structure

Target = Literal["all", "ffn"]
RankRule = Literal["sensitivity", "uniform", "energy"]


def is_ffn_shape(rows: int, cols: int, intermediate_size: int | None) -> bool:
    """The expand/contract matrices of a transformer MLP: one side is the intermediate size (when
    the config says it), else one side at least twice the other."""
    if intermediate_size:
        return intermediate_size in (rows, cols)
    return max(rows, cols) >= 2 * min(rows, cols)


def linear_layers(
    module: Any, *, target: Target, exclude: list[str], min_features: int
) -> list[tuple[str, Any]]:
    import torch.nn as nn

    intermediate = getattr(getattr(module, "config", None), "intermediate_size", None)
    patterns = [re.compile(p) for p in exclude]
    found = []
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.Linear) or min(sub.in_features, sub.out_features) < min_features:
            continue
        if any(p.search(name) for p in patterns):
            continue
        if target == "ffn" and not is_ffn_shape(sub.out_features, sub.in_features, intermediate):
            continue
        found.append((name, sub))
    return found


def spectrum(name: str, weight: Any) -> rank_rules.Spectrum:
    import torch

    s = torch.linalg.svdvals(weight.detach().double().cpu()).numpy()
    rows, cols = weight.shape
    return rank_rules.Spectrum(name, s, rows * cols, rows + cols)


def choose_ranks(
    spectra: list[rank_rules.Spectrum], rule: RankRule, *, param_ratio: float, energy: float
) -> dict[str, int | None]:
    if rule == "energy":
        return rank_rules.ranks_by_energy(spectra, energy)
    if rule == "uniform":
        return rank_rules.ranks_uniform(spectra, param_ratio)
    return rank_rules.ranks_by_sensitivity(spectra, param_ratio)


def svd_factors(weight: np.ndarray | Any, rank: int) -> tuple[Any, Any]:
    """(B [rows, r], A [r, cols]) with B @ A the best rank-r approximation of ``weight``; the
    singular values are split evenly so both factors have the same scale (better for training)."""
    import torch

    w = torch.as_tensor(weight).detach().double().cpu()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def factorize_linears(module: Any, chosen: dict[str, int | None]) -> list[dict[str, Any]]:
    """Replace each chosen Linear by two; returns what was done, layer by layer."""
    import torch

    done = []
    for name, rank in chosen.items():
        linear = module.get_submodule(name)
        if rank is None:
            continue
        b, a = svd_factors(linear.weight, rank)
        new = structure.factorized_linear(
            linear.in_features, linear.out_features, rank, linear.bias is not None
        )
        new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            new[0].weight.copy_(a)
            new[1].weight.copy_(b)
            if linear.bias is not None:
                new[1].bias.copy_(linear.bias)
        structure.set_submodule(module, name, new)
        structure.record(module, name, {"kind": "linear", "rank": rank})
        rows, cols = linear.out_features, linear.in_features
        done.append(
            {
                "layer": name,
                "shape": [rows, cols],
                "rank": rank,
                "params": rank * (rows + cols),
                "dense_params": rows * cols,
            }
        )
    return done
