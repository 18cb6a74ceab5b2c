"""Sparsity schedules for gradual pruning."""

from __future__ import annotations


def cubic_sparsity(final: float, steps: int, *, initial: float = 0.0) -> list[float]:
    """Zhu & Gupta (2017), "To prune, or not to prune": s_t = s_f + (s_i - s_f) (1 - t/n)^3.

    Prunes fast while many redundant weights remain and slowly near the target, which is what lets
    fine-tuning between steps keep up at 90% sparsity. Returns the targets of steps 1..n (the
    last one is ``final``).
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return [final + (initial - final) * (1.0 - t / steps) ** 3 for t in range(1, steps + 1)]


def linear_fractions(steps: int) -> list[float]:
    """Equal shares of the way to the target: 1/n, 2/n, ..., 1 (structured rounds)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return [t / steps for t in range(1, steps + 1)]
