"""A goal job, start to finish: split the rows, search (candidates built and measured one by one
until the budget is spent), re-measure the best candidates on the held-out rows with the full
benchmark, choose, and lay out the artifacts as a recipe job does (engine/job.py).

Every evaluated candidate is emitted as it ends (``{"type": "candidate"}``): the worker records
it, so a later attempt resumes from them (``JobRequest.prior_trials``) rather than from scratch.
Candidate models are kept under the job's checkpoint folder; one missing there (the next attempt
ran on another host) is rebuilt from its recipe, which is deterministic for a seed."""

from __future__ import annotations

import statistics
import time
from typing import Any

from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.context import PassContext
from engine.data import Dataset, load_dataset
from engine.errors import BudgetSpent, Canceled
from engine.formats import hf
from engine.formats.detect import resolve_upload
from engine.job import (
    Emit,
    JobRequest,
    as_onnx,
    error_payload,
    model_artifacts,
    package_model,
    write_outputs,
)
from engine.model import ModelFile
from engine.search import pareto
from engine.search.evaluate import Prepared, Trained, as_benchmarked, build, measure
from engine.search.goal import Goal, objective_gain, quality_drop, resolve_goal
from engine.search.space import ModelTraits, applicable_methods, recipe_of
from engine.search.split import split_rows, subsets
from engine.search.strategy import Search, TrialRecord
from engine.search.verdict import choose, explain, trial_flags

MAX_TRIALS = 2000  # a guard: a search ends on its budget or an exhausted space first
# Candidates re-measured on the held-out rows, with their artifacts stored: the best of the
# Pareto front, feasible ones first.
MAX_FINAL_CANDIDATES = 4
# Share of the budget kept for the final benchmark.
FINAL_SHARE = 0.15
# Share of the search's time one candidate may take: one that would train past it (many epochs
# of a large dataset) is stopped and recorded as failed, and the search goes on with the rest.
CANDIDATE_SHARE = 0.5


class _Emitter:
    def __init__(self, emit: Emit):
        self.emit = emit

    def progress(self, stage: str, fraction: float, message: str) -> None:
        self.emit({"type": "progress", "stage": stage, "fraction": round(max(0.0, min(1.0, fraction)), 4), "message": message})

    def event(self, name: str, /, **fields: Any) -> None:
        self.emit({"type": "event", "event": name, **fields})


def _prepare(request: JobRequest, original: ModelFile, bench: BenchmarkConfig) -> tuple[Prepared, Goal, ModelTraits, dict[str, Any]]:
    dataset = load_dataset(request.dataset_path) if request.dataset_path else None
    eval_set = load_dataset(request.eval_dataset_path) if request.eval_dataset_path else None
    traits = ModelTraits(format=original.format, has_dataset=dataset is not None,
                         has_labels=dataset is not None and dataset.labels is not None, convolutional=_convolutional(original),
                         layers=_blocks(original))
    goal = resolve_goal(request.goal or {}, dataset=dataset, batch_sizes=bench.batch_sizes, applicable=applicable_methods(traits))
    fit: Dataset | None = None
    select: Dataset | None = None
    held: Dataset | None = None
    if dataset is not None:
        split = split_rows(len(dataset), request.seed, eval_set=eval_set is not None)
        fit, select, held = subsets(dataset, split)
        rows = split.describe(eval_rows=len(eval_set) if eval_set is not None else None)
        held = eval_set if eval_set is not None else held
    else:
        rows = {"generated": "no dataset: candidates were built with generated calibration inputs and judged on "
                             "generated inputs, the same for the search and the final figure"}
    baseline = as_onnx(original, request.work_dir / "bench" / "baseline") if bench.runtime == "onnxruntime" else original
    prepared = Prepared(original=original, baseline=baseline, fit=fit, select=select, held_out=held,
                        tokenizer_folder=original.path if original.format == "hf" else None, bench=bench)
    return prepared, goal, traits, rows


def _blocks(model: ModelFile) -> int | None:
    """A Hugging Face transformer's block count, which its students cut."""
    if model.format != "hf":
        return None
    layers = hf.read_json_object(model.path / "config.json").get("num_hidden_layers")
    return layers if isinstance(layers, int) and not isinstance(layers, bool) else None


def _convolutional(model: ModelFile) -> bool:
    if model.format != "onnx":
        return False
    import onnx

    from engine.quantization.convolutional import is_convolutional

    return is_convolutional(onnx.load(str(model.path), load_external_data=False))


def _candidate_view(record: TrialRecord, goal: Goal) -> dict[str, Any]:
    """A candidate as the job lists it: its recipe, its metrics on the selection rows, its flags,
    and the search's record of it (from which a later attempt resumes)."""
    extra = record.extra
    metrics = dict(extra.get("metrics") or {})
    metrics["search"] = {k: v for k, v in record.to_json().items() if k != "extra"} | {"recipe": extra.get("recipe", [])}
    return {"id": extra["candidate_id"], "recipe": extra.get("recipe", []), "metrics": metrics,
            "ratios": extra.get("ratios") or {}, "flags": trial_flags(record, goal)}


def _search(request: JobRequest, prepared: Prepared, goal: Goal, traits: ModelTraits, say: _Emitter,
            search: Search, deadline: float, started: float, elapsed_before: float) -> None:
    prefix = request.candidate_id.rsplit("_", 1)[0]
    ctx = PassContext(work_dir=request.work_dir / "trials", original=prepared.original, dataset=prepared.fit,
                      device=prepared.bench.device, seed=request.seed, event_fn=say.event,
                      cancel_file=request.cancel_path, deadline=deadline)
    keep = (request.checkpoint_dir or request.work_dir) / "search"
    durations: list[float] = []
    trained = Trained()
    candidate_limit = CANDIDATE_SHARE * goal.budget_seconds * (1 - FINAL_SHARE)
    while len(search.records) < MAX_TRIALS and not search.exhausted:
        left = deadline - time.monotonic()
        if left <= 0 or (durations and left < 0.5 * statistics.median(durations)):
            break
        proposal = search.ask()
        if proposal.repeat_of is not None:
            search.tell(proposal, None)
            continue
        number = len(search.records)
        candidate_id = f"{prefix}_{number + 1}"
        recipe = recipe_of(proposal.plan, goal, traits)
        say.event("job.search.candidate_started", candidate_id=candidate_id, recipe=recipe)
        ctx.progress_fn = lambda stage, fraction, message, n=number: say.progress(
            "search", _fraction(started, deadline, elapsed_before),
            f"{n} candidates evaluated; candidate {n + 1}: {stage} {message}".strip())
        began = time.monotonic()
        ctx.deadline = min(deadline, began + candidate_limit)
        record = TrialRecord(number=number, plan=proposal.plan, params={}, distributions={}, state="failed",
                             extra={"candidate_id": candidate_id, "recipe": recipe})
        try:
            model, ran = build(recipe, prepared, ctx, request.work_dir / "trials" / candidate_id, trained)
            measured = measure(candidate_id, model, ran, goal, prepared, request.work_dir / "trials" / candidate_id)
            package_model(model, keep / candidate_id, "model")
            entry = measured["entry"]
            record.extra.update(recipe=ran, metrics=entry["metrics"], ratios=entry["ratios"])
            if measured["gain"] is None or measured["drop"] is None:
                record.error = {"code": "not_measurable", "message": f"the benchmark could not measure its {goal.metric} or {goal.objective}"}
            else:
                record.state, record.gain, record.drop = "complete", measured["gain"], measured["drop"]
        except BudgetSpent:
            if time.monotonic() >= deadline:  # the search's budget: the candidate in the middle is dropped
                raise
            record.error = {"code": "candidate_time_limit",
                            "message": f"stopped after {candidate_limit / 60:.1f} minutes ({CANDIDATE_SHARE:.0%} of the search's time); "
                                       "a shorter training (fewer epochs or rows) fits"}
        except Canceled:  # the candidate in the middle is dropped, the rest kept
            raise
        except Exception as exc:  # noqa: BLE001 - one candidate failing (not applicable, out of memory) is recorded
            error = error_payload(exc)
            record.error = {"code": error["code"], "message": error["message"]}
        record.seconds = round(time.monotonic() - began, 3)
        record.elapsed_seconds = round(elapsed_before + time.monotonic() - started, 3)
        durations.append(record.seconds)
        search.tell(proposal, record)
        say.emit({"type": "candidate", "candidate": _candidate_view(record, goal)})
        say.progress("search", _fraction(started, deadline, elapsed_before), _summary(search.records, goal, deadline))


def _fraction(started: float, deadline: float, elapsed_before: float) -> float:
    total = deadline - started + elapsed_before
    return 0.9 * (elapsed_before + time.monotonic() - started) / total if total > 0 else 0.9


def _summary(records: list[TrialRecord], goal: Goal, deadline: float) -> str:
    feasible = [r for r in records if r.feasible(goal)]
    left = max(0, int(deadline - time.monotonic()))
    text = f"{len(records)} candidates evaluated"
    if feasible:
        best = max(feasible, key=lambda r: r.gain or 0.0)
        text += f"; best so far {best.gain:.2f}x {goal.objective} at {goal.metric} drop {best.drop:.4f}"
    else:
        text += f"; none within {goal.metric} drop {goal.max_drop} yet"
    return f"{text}; {left // 60}m{left % 60:02d}s of search left"


def _final_models(request: JobRequest, chosen: list[TrialRecord], prepared: Prepared, goal: Goal, traits: ModelTraits) -> list[ModelFile]:
    keep = (request.checkpoint_dir or request.work_dir) / "search"
    models = []
    for record in chosen:
        cid = record.extra["candidate_id"]
        stored = sorted((keep / cid).glob("model*")) if (keep / cid).exists() else []
        if stored:
            models.append(resolve_upload(stored[0], request.work_dir / "final" / cid))
            continue
        ctx = PassContext(work_dir=request.work_dir / "rebuild", original=prepared.original, dataset=prepared.fit,
                          device=prepared.bench.device, seed=request.seed, cancel_file=request.cancel_path)
        model, _ = build(recipe_of(record.plan, goal, traits), prepared, ctx, request.work_dir / "rebuild" / cid)
        models.append(model)
    return models


def final_candidates(front: list[TrialRecord], goal: Goal) -> list[TrialRecord]:
    """The front's fastest, feasible ones first, and always its feasible candidate with the most
    margin under the bound: the fastest feasible ones on a few hundred selection rows are the
    likeliest to have been lucky there and to be vetoed by the held-out rows."""
    chosen = sorted(front, key=lambda r: (not r.feasible(goal), -(r.gain or 0.0)))[:MAX_FINAL_CANDIDATES]
    safest = min((r for r in front if r.feasible(goal)), key=lambda r: (r.drop, -(r.gain or 0.0)), default=None)
    if safest is not None and safest not in chosen:
        chosen = [*chosen[:MAX_FINAL_CANDIDATES - 1], safest]
    return chosen


def final_config(bench: BenchmarkConfig, goal: Goal, models: int) -> BenchmarkConfig:
    """The job's benchmark settings, at the goal's batch size too, timed within the budget's share
    for the final figures."""
    sizes = bench.batch_sizes if goal.batch_size in bench.batch_sizes else [goal.batch_size, *bench.batch_sizes][:8]
    per_model = FINAL_SHARE * goal.budget_seconds / 2 / (models * len(sizes))
    return bench.model_copy(update={"batch_sizes": sizes, "time_budget_seconds": max(0.5, min(bench.time_budget_seconds, per_model)),
                                    "min_cosine": None, "max_quality_drop": None})


def run_search(request: JobRequest, emit: Emit) -> dict[str, Any]:
    started_wall = time.time()
    started = time.monotonic()
    say = _Emitter(emit)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    say.progress("preparing", 0.0, "loading the model and splitting the rows")
    original = resolve_upload(request.model_path, request.work_dir / "original")
    bench = BenchmarkConfig.model_validate(request.benchmark)
    prepared, goal, traits, rows = _prepare(request, original, bench)
    prior = [TrialRecord.from_json(t) for t in request.prior_trials]
    elapsed_before = max((r.elapsed_seconds for r in prior), default=0.0)
    deadline = started + goal.budget_seconds * (1 - FINAL_SHARE) - elapsed_before
    search = Search(goal, traits, request.seed, prior)
    if prior:
        say.event("job.search.resumed", candidates=len(prior), elapsed_seconds=elapsed_before)
    try:
        _search(request, prepared, goal, traits, say, search, deadline, started, elapsed_before)
    except BudgetSpent:
        say.event("job.search.budget_spent", candidates=len(search.records))
    records = search.records

    front = pareto.front(records)
    chosen = final_candidates(front, goal)
    say.progress("benchmark", 0.9, f"measuring {len(chosen)} candidates of the Pareto front on the held-out rows")
    models = _final_models(request, chosen, prepared, goal, traits)
    config = final_config(bench, goal, len(models) + 1)
    benchmarked = [as_benchmarked(m, prepared, request.work_dir / "final" / r.extra["candidate_id"] / "bench") for m, r in zip(models, chosen, strict=True)]
    report = benchmark_models(
        prepared.baseline,
        [CandidateInput(id=r.extra["candidate_id"], model=b, recipe=r.extra.get("recipe", [])) for r, b in zip(chosen, benchmarked, strict=True)],
        dataset=prepared.held_out, config=config, tokenizer_folder=prepared.tokenizer_folder,
        progress=lambda f, m: say.progress("benchmark", 0.9 + 0.09 * f, m),
    )
    for entry in report["candidates"]:
        entry["held_out"] = {"drop": quality_drop(goal, report["baseline"], entry["metrics"]),
                             "gain": objective_gain(goal, entry["ratios"])}
    best, why = choose(report, records, goal)
    report["best_candidate_id"] = best
    report["search"] = {
        "goal": goal.describe(),
        "rows": rows,
        "candidates": [_candidate_view(r, goal)["metrics"]["search"] | {"id": r.extra["candidate_id"], "flags": trial_flags(r, goal)} for r in records],
        "pareto_front": [r.extra["candidate_id"] for r in front],
        "final": [r.extra["candidate_id"] for r in chosen],
        "goal_met": best is not None,
        "why": why,
        "seconds": round(elapsed_before + time.monotonic() - started, 3),
    }
    if prepared.select is not None:
        # The job's dataset (dataset_id): every part but an eval_dataset_id's held-out rows.
        of_dataset = [part["rows"] for part in rows.values() if isinstance(part, dict) and part.get("source") == "dataset_id"]
        report["dataset"] = {"rows": sum(of_dataset), "format": prepared.select.format}

    artifacts: list[dict[str, Any]] = []
    for record, model, bench_model in zip(chosen, models, benchmarked, strict=True):
        cid = record.extra["candidate_id"]
        artifacts += model_artifacts(model, bench_model, request.out_dir, "model" if cid == best else f"model-{cid}", cid, cid == best, bench)
    final_entries = {c["id"]: c for c in report["candidates"]}
    candidates = []
    for record in records:
        view = _candidate_view(record, goal)
        if view["id"] in final_entries:
            entry = final_entries[view["id"]]
            view.update(metrics={**entry["metrics"], "search": view["metrics"]["search"]}, ratios=entry["ratios"], flags=entry["flags"])
        candidates.append(view)
    best_recipe = next((c["recipe"] for c in candidates if c["id"] == best), [])
    result = write_outputs(request, original_format=original.format, report=report, artifacts=artifacts, recipe=best_recipe,
                           bench_config=config, started=started_wall, candidates=candidates,
                           extra={"goal_met": best is not None, "message": explain(best, records, goal, report)})
    say.progress("done", 1.0, "finished")
    return result
