"""Which candidate is the best, and why, in words a user can act on.

The best is chosen among the candidates re-measured on the held-out rows: it met the quality
bound on the selection rows, the held-out rows confirm it (they can only veto, never pick), and
the final benchmark does not find it slower than the original. Of those, the highest gain on the
objective wins."""

from __future__ import annotations

from typing import Any

from engine.search.goal import Goal
from engine.search.strategy import TrialRecord


def trial_flags(record: TrialRecord, goal: Goal) -> list[str]:
    if record.state != "complete":
        return ["failed"]
    flags = []
    if not record.feasible(goal):
        flags.append("below_quality_bound")
    if goal.objective == "latency" and (record.gain or 0.0) < 1.0:
        flags.append("slower_than_baseline")
    return flags


def _describe(goal: Goal, gain: float | None, drop: float | None) -> str:
    what = f"{gain:.2f}x {goal.objective}" if gain is not None else f"{goal.objective} not measured"
    if goal.objective == "latency":
        what += f" at batch size {goal.batch_size}"
    return what + (f", {goal.metric} drop {drop:.4f}" if drop is not None else "")


def choose(report: dict[str, Any], records: list[TrialRecord], goal: Goal) -> tuple[str | None, dict[str, Any]]:
    """Flags each re-measured candidate against the goal (in place) and returns the best's id."""
    by_id = {r.extra["candidate_id"]: r for r in records}
    eligible = []
    for entry in report["candidates"]:
        held = entry["held_out"]
        if held["drop"] is not None and held["drop"] > goal.max_drop + 1e-12 and "below_quality_bound" not in entry["flags"]:
            entry["flags"].append("below_quality_bound")
            entry["flag_reasons"]["below_quality_bound"] = (
                f"{goal.metric} drop {held['drop']:.4f} on the held-out rows > {goal.max_drop}"
            )
        record = by_id[entry["id"]]
        if record.feasible(goal) and not entry["flags"] and held["gain"] is not None:
            eligible.append((held["gain"], entry["id"]))
    if not eligible:
        return None, {"candidate_id": None, "text": "no candidate met the goal on both the selection and the held-out rows without being slower than the original"}
    gain, best = max(eligible)
    held = next(e["held_out"] for e in report["candidates"] if e["id"] == best)
    others = len(eligible) - 1
    text = (
        f"{best}: {_describe(goal, gain, held['drop'])} on the held-out rows (bound {goal.max_drop}); "
        f"the highest {goal.objective} gain of the {len(eligible)} candidates that met the bound on the selection "
        f"and held-out rows and were not slower than the original" + (f" ({others} others)" if others else "")
    )
    return best, {"candidate_id": best, "text": text, "gain": gain, "drop": held["drop"]}


def explain(best: str | None, records: list[TrialRecord], goal: Goal, report: dict[str, Any]) -> str:
    """The job's message: why the best, or what it would take to meet the goal."""
    if best is not None:
        return str(report["search"]["why"]["text"])
    done = [r for r in records if r.state == "complete" and r.drop is not None]
    if not done:
        return (f"no candidate could be measured ({len(records)} tried, all failed): see each candidate's error; "
                "a dataset or other methods may help")
    closest = sorted(done, key=lambda r: (r.drop, -(r.gain or 0.0)))[:2]  # type: ignore[arg-type, return-value]
    named = "; ".join(f"{r.extra['candidate_id']} ({_describe(goal, r.gain, r.drop)})" for r in closest)
    needed = max(0.0, min(r.drop for r in closest))  # type: ignore[type-var]
    final = {e["id"]: e for e in report.get("candidates", [])}
    flags = final.get(closest[0].extra["candidate_id"], {}).get("flags", [])
    if needed > goal.max_drop:
        hints = [f"a looser bound (max_drop {needed:.3g} would admit {closest[0].extra['candidate_id']})"]
    elif "below_quality_bound" in flags:
        hints = ["more selection rows (it met the bound on the selection rows, not on the held-out rows)"]
    else:
        hints = ["a candidate that is not slower than the original (it met the bound but not the speed check)"]
    hints.append("a dataset with more rows (recovery training)")
    hints.append(f"a longer budget than {goal.budget_seconds / 60:g} minutes")
    return f"no candidate met the goal ({goal.metric} drop at most {goal.max_drop}); the closest: {named}. It may take {', '.join(hints)}."
