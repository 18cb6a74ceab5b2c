"""SVD of PyTorch Linear layers: W [out, in] ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), two Linears."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.formats import modeling_shrink
from engine.lowrank import ranks as rank_rules
from engine.lowrank import structure
from engine.lowrank.options import RankRule, Target, excluded_by


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
    excluded = excluded_by(exclude)
    found = []
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.Linear) or min(sub.in_features, sub.out_features) < min_features:
            continue
        if excluded(name):
            continue
        if target == "ffn" and not is_ffn_shape(sub.out_features, sub.in_features, intermediate):
            continue
        found.append((name, sub))
    return found


def input_whitening(
    tm: Any, dataset: Any, names: list[str], *, rows: int, max_length: int
) -> dict[str, Any]:
    """Cholesky factor L of each layer's input second moment (C = X^T X / N = L L^T), from the
    first ``rows`` dataset rows. Truncating W L instead of W minimizes the error of the layer's
    *outputs* on real inputs (SVD-LLM, Wang et al. 2024): the inputs of a transformer's
    contracting MLP layer are far from isotropic after GELU, and weight-only SVD wastes rank."""
    import torch

    from engine.training import torch_batches

    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(_module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double().cpu()
            sums[name] = sums.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    handles = [tm.module.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    device = next(tm.module.parameters()).device
    try:
        tm.module.eval()
        with torch.no_grad():
            for feeds, _ in torch_batches(
                dataset.take(slice(0, rows)),
                tm,
                32,
                shuffle=False,
                seed=0,
                max_length=max_length,
                device=str(device),
            ):
                tm.forward(feeds)
    finally:
        for h in handles:
            h.remove()
    factors = {}
    for name in names:
        c = sums[name] / counts[name]
        # Damping: dead units make C singular; a small ridge keeps the factor invertible.
        c = c + 1e-4 * c.diagonal().mean().clamp_min(1e-12) * torch.eye(c.shape[0], dtype=c.dtype)
        factors[name] = torch.linalg.cholesky(c)
    return factors


def spectrum(name: str, weight: Any, whitening: Any = None) -> rank_rules.Spectrum:
    import torch

    w = weight.detach().double().cpu()
    if whitening is not None:
        w = w @ whitening
    s = torch.linalg.svdvals(w).numpy()
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


def svd_factors(weight: np.ndarray | Any, rank: int, whitening: Any = None) -> tuple[Any, Any]:
    """(B [rows, r], A [r, cols]) with B @ A the best rank-r approximation of ``weight`` (of its
    outputs on inputs whose second moment is L L^T, when ``whitening`` L is given); the singular
    values are split evenly so both factors have the same scale (better for training)."""
    import torch

    w = torch.as_tensor(weight).detach().double().cpu()
    if whitening is not None:
        w = w @ whitening
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    right = root[:, None] * vh[:rank]
    if whitening is not None:
        # right @ L^-1, as a triangular solve: (L^T)^-1 right^T, transposed back.
        right = torch.linalg.solve_triangular(whitening.T, right.T, upper=True).T
    return u[:, :rank] * root, right


def factorize_linears(
    module: Any, chosen: dict[str, int | None], whitening: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Replace each chosen Linear by two; returns what was done, layer by layer."""
    import torch

    done = []
    for name, rank in chosen.items():
        linear = module.get_submodule(name)
        if rank is None:
            continue
        b, a = svd_factors(linear.weight, rank, (whitening or {}).get(name))
        new = modeling_shrink.factorized_linear(
            linear.in_features, linear.out_features, rank, linear.bias is not None
        )
        new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            new[0].weight.copy_(a)
            new[1].weight.copy_(b)
            if linear.bias is not None:
                new[1].bias.copy_(linear.bias)
        modeling_shrink.set_submodule(module, name, new)
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
