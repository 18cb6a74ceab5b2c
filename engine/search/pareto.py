"""The Pareto front of the candidates: quality drop (lower is better) against objective gain
(higher is better)."""

from __future__ import annotations

from engine.search.strategy import TrialRecord


def front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Candidates no other candidate beats on both axes, by gain (best first)."""
    done = [r for r in records if r.state == "complete" and r.gain is not None and r.drop is not None]
    kept = [
        r for r in done
        if not any(
            o is not r and o.gain >= r.gain and o.drop <= r.drop and (o.gain > r.gain or o.drop < r.drop)  # type: ignore[operator]
            for o in done
        )
    ]
    return sorted(kept, key=lambda r: -(r.gain or 0.0))
