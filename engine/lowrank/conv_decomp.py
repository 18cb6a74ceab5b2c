"""Tucker-2 and CP decompositions of Conv2d weights with tensorly.

Tucker-2 (Kim et al. 2016): W [out, in, kh, kw] ~ core [r_out, r_in, kh, kw] x_0 U_out x_1 U_in,
run as a 1x1 conv (in -> r_in), the kxk core conv, and a 1x1 conv (r_out -> out).
CP (Lebedev et al. 2015): W ~ sum_r a_r (x) b_r (x) c_r (x) d_r, run as 1x1, depthwise kx1,
depthwise 1xk and 1x1 convolutions. Decompositions run on the numpy backend inside a backend
context, so the process-wide tensorly backend is left as it was.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.formats import modeling_shrink
from engine.lowrank.options import TuckerRankRule


def decomposable_convs(module: Any, min_channels: int) -> list[tuple[str, Any]]:
    """Plain (ungrouped) 2-D convolutions with a spatial kernel; 1x1 convs are SVD's business."""
    import torch.nn as nn

    return [
        (name, sub)
        for name, sub in module.named_modules()
        if isinstance(sub, nn.Conv2d)
        and sub.groups == 1
        and max(sub.kernel_size) > 1
        and min(sub.in_channels, sub.out_channels) >= min_channels
    ]


def _weight(conv: Any) -> np.ndarray:
    return conv.weight.detach().double().cpu().numpy()


def mode_energy_rank(weight: np.ndarray, mode: int, energy: float) -> int:
    from engine.lowrank.ranks import energy_rank

    unfolded = np.moveaxis(weight, mode, 0).reshape(weight.shape[mode], -1)
    return energy_rank(np.linalg.svd(unfolded, compute_uv=False), energy)


def tucker2_params(conv: Any, rank_in: int, rank_out: int) -> int:
    kh, kw = conv.kernel_size
    return conv.in_channels * rank_in + rank_in * rank_out * kh * kw + rank_out * conv.out_channels


def tucker2_ranks(
    conv: Any, rule: TuckerRankRule, *, rank_ratio: float, energy: float
) -> tuple[list[int], int]:
    """([rank_in, rank_out], the parameters they give): ``rank_ratio`` of each side's channels, or
    per mode the smallest rank holding ``energy`` of the unfolding's squared singular values."""
    if rule == "energy":
        weight = _weight(conv)
        rank_out = mode_energy_rank(weight, 0, energy)
        rank_in = mode_energy_rank(weight, 1, energy)
    else:
        rank_out = max(1, round(conv.out_channels * rank_ratio))
        rank_in = max(1, round(conv.in_channels * rank_ratio))
    return [rank_in, rank_out], tucker2_params(conv, rank_in, rank_out)


def dense_params(conv: Any) -> int:
    return int(conv.weight.numel())


def tucker2(conv: Any, rank_in: int, rank_out: int) -> Any:
    import tensorly as tl
    import torch
    from tensorly.decomposition import partial_tucker

    with tl.backend_context("numpy"):
        (core, (u_out, u_in)), _ = partial_tucker(
            _weight(conv), rank=[rank_out, rank_in], modes=[0, 1], init="svd", random_state=0
        )
    new = modeling_shrink.tucker2_conv(conv, rank_in, rank_out).to(conv.weight.device)
    dtype = conv.weight.dtype
    with torch.no_grad():
        new[0].weight.copy_(
            torch.from_numpy(np.ascontiguousarray(u_in.T)[:, :, None, None]).to(dtype)
        )
        new[1].weight.copy_(torch.from_numpy(np.ascontiguousarray(core)).to(dtype))
        new[2].weight.copy_(
            torch.from_numpy(np.ascontiguousarray(u_out)[:, :, None, None]).to(dtype)
        )
        if conv.bias is not None:
            new[2].bias.copy_(conv.bias)
    return new


def cp_params(conv: Any, rank: int) -> int:
    kh, kw = conv.kernel_size
    return rank * (conv.in_channels + kh + kw + conv.out_channels)


def cp_rank_for(conv: Any, param_ratio: float) -> int:
    kh, kw = conv.kernel_size
    return max(
        1,
        math.floor(
            param_ratio * dense_params(conv) / (conv.in_channels + kh + kw + conv.out_channels)
        ),
    )


def cp(conv: Any, rank: int) -> Any:
    import tensorly as tl
    import torch
    from tensorly.decomposition import parafac

    with tl.backend_context("numpy"):
        decomposition = parafac(
            _weight(conv),
            rank,
            init="random",
            random_state=0,
            n_iter_max=50,
            normalize_factors=True,
        )
    weights, (out_f, in_f, h_f, w_f) = decomposition.weights, decomposition.factors
    new = modeling_shrink.cp_conv(conv, rank).to(conv.weight.device)
    dtype = conv.weight.dtype

    def t(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    with torch.no_grad():
        new[0].weight.copy_(t(in_f.T[:, :, None, None]))
        new[1].weight.copy_(t(h_f.T[:, None, :, None]))
        new[2].weight.copy_(t(w_f.T[:, None, None, :]))
        new[3].weight.copy_(t((out_f * weights[None, :])[:, :, None, None]))
        if conv.bias is not None:
            new[3].bias.copy_(conv.bias)
    return new
