"""Which rank each factorized layer keeps.

A layer of shape [m, n] factorized at rank r costs r * (m + n) parameters instead of m * n, so
only ranks below the break-even m * n / (m + n) save anything; above it the layer stays dense.

Per-layer ranks under a parameter budget are chosen by sensitivity: the relative error a layer
suffers when truncated (sum of its dropped squared singular values over its total). Each extra
rank unit goes to the layer whose error drops most per parameter it costs; since singular values
decrease, this greedy allocation is the optimum of the separable problem.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrum:
    """Singular values of one layer (or one unfolding) and the cost of one rank unit."""

    name: str
    singular_values: np.ndarray
    dense_params: int
    params_per_rank: int

    @property
    def break_even(self) -> int:
        """The largest rank that still saves parameters."""
        return max(0, (self.dense_params - 1) // self.params_per_rank)


def energy_rank(singular_values: np.ndarray, energy: float) -> int:
    """The smallest rank keeping ``energy`` of the squared singular values."""
    sq = np.asarray(singular_values, dtype=np.float64) ** 2
    total = sq.sum()
    if total <= 0:
        return 1
    kept = np.cumsum(sq) / total
    return int(min(len(sq), np.searchsorted(kept, energy - 1e-12) + 1))


def relative_error(singular_values: np.ndarray, rank: int) -> float:
    sq = np.asarray(singular_values, dtype=np.float64) ** 2
    total = sq.sum()
    return float(np.sqrt(sq[rank:].sum() / total)) if total > 0 else 0.0


def ranks_by_energy(spectra: list[Spectrum], energy: float) -> dict[str, int | None]:
    """Rank per layer; None where the kept rank would not save parameters."""
    out: dict[str, int | None] = {}
    for s in spectra:
        r = energy_rank(s.singular_values, energy)
        out[s.name] = r if r <= s.break_even else None
    return out


def ranks_uniform(spectra: list[Spectrum], param_ratio: float) -> dict[str, int | None]:
    """Every layer keeps ``param_ratio`` of its own parameters."""
    return {
        s.name: max(1, int(param_ratio * s.dense_params / s.params_per_rank))
        if param_ratio < 1
        else None
        for s in spectra
    }


def ranks_by_sensitivity(spectra: list[Spectrum], param_ratio: float) -> dict[str, int | None]:
    """Ranks whose factorized layers hold ``param_ratio`` of the layers' dense parameters in
    all, spent where the truncation error falls fastest per parameter."""
    budget = param_ratio * sum(s.dense_params for s in spectra)
    ranks = {s.name: 1 for s in spectra}
    spent = sum(s.params_per_rank for s in spectra)
    heap: list[tuple[float, int, int]] = []
    energies = []
    for i, s in enumerate(spectra):
        sq = np.asarray(s.singular_values, dtype=np.float64) ** 2
        energies.append(sq / max(sq.sum(), 1e-30))
        if len(sq) > 1:
            heapq.heappush(heap, (-energies[i][1] / s.params_per_rank, i, 1))
    while heap:
        gain, i, r = heapq.heappop(heap)
        s = spectra[i]
        if spent + s.params_per_rank > budget:
            continue  # another layer may still afford a (cheaper) unit
        ranks[s.name] = r + 1
        spent += s.params_per_rank
        if r + 1 < len(energies[i]):
            heapq.heappush(heap, (-energies[i][r + 1] / s.params_per_rank, i, r + 1))
    return {s.name: (ranks[s.name] if ranks[s.name] <= s.break_even else None) for s in spectra}
